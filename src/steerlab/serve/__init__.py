"""``steerlab serve``: an OpenAI-compatible HTTP server for a local model, steerable per request.

    create_app(lm, vectors=..., config=ServeConfig(...))   the FastAPI application
    start_server(app, host, port)                            serve it in a background thread
    run_server(app, host, port)                              serve it in this thread (the CLI)

Modules: :mod:`~steerlab.serve.protocol` (the request schemas: what is honoured, what is
refused), :mod:`~steerlab.serve.batcher` (requests arriving together become one batch),
:mod:`~steerlab.serve.engine` (a batch of rows through the core's generation, with per-row
steering, seeds and log-probabilities), :mod:`~steerlab.serve.streaming` (token deltas for
``stream=true``), :mod:`~steerlab.serve.service` (limits and checks, rows, reply parts),
:mod:`~steerlab.serve.app` (HTTP: routes, auth, errors, server-sent events),
:mod:`~steerlab.serve.runner` (uvicorn). Needs the ``steerlab[serve]`` extra (FastAPI, uvicorn).
See docs/serve.md.
"""

from __future__ import annotations

from steerlab.serve.app import create_app
from steerlab.serve.runner import ServerHandle, run_server, start_server
from steerlab.serve.service import ServeConfig

__all__ = ["ServeConfig", "ServerHandle", "create_app", "run_server", "start_server"]
