"""The ``steerlab`` command line: a thin layer over the library.

Commands::

    steerlab info MODEL                          architecture, template, per-layer activation norms
    steerlab extract MODEL --out v.safetensors   contrast vectors (pairs file or two prompt sets)
    steerlab generate MODEL --prompt ... --vector v.safetensors:6 --strength 0.1 --strength 0.2
    steerlab export-gguf v.safetensors --out v.gguf   llama.cpp control vector
    steerlab melbo MODEL --out v.safetensors      unsupervised vectors from one prompt (also power-iter)
    steerlab run CONFIG.yaml [--executor ray]    experiments (steerlab.experiments)
    steerlab demo / steerlab report RUN_DIR
    steerlab serve MODEL --vector refusal=v.safetensors   OpenAI-compatible server, steerable per request

Commands live in modules by topic (``core``, ``experiments``, one per study) and register
themselves on the one ``app`` (``steerlab.cli._app``) when imported below; adding a command
module is one import line here. Every command parses its options, calls library functions and
prints rich tables; errors end with one ``error: ...`` line (see ``_app``).
"""

from __future__ import annotations

# importing the command modules registers their commands on ``app``
from steerlab.cli import core, experiments, refusal_direction, serve, unsupervised  # noqa: F401
from steerlab.cli._app import INFO_PROMPTS, app, error_message, fail, main  # noqa: F401

__all__ = ["INFO_PROMPTS", "app", "error_message", "fail", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
