"""Start ``steerlab serve``'s OpenAI-compatible server in a background thread (for tests and notebooks).

The server is the real one (:mod:`steerlab.serve`: FastAPI + uvicorn, batching, streaming,
log-probabilities, per-request steering); this function only starts it in-process. Unlike the
command line, it accepts any ``model`` name and does not check prompts against the model's
context length by default, so a test can stand a tiny model (128 positions) in for an API
model under whatever name its config uses.

Example:
    >>> server = serve(load_model("default"))                # a free port on 127.0.0.1
    >>> url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    >>> server.shutdown()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.serve.runner import ServerHandle
    from steerlab.vectors.vector import SteeringVector


def serve(
    lm: LanguageModel,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    vectors: Mapping[str, SteeringVector] | None = None,
    api_key: str | None = None,
    any_model_name: bool = True,
    check_context: bool = False,
    **limits: Any,
) -> ServerHandle:
    """Serve ``lm`` in a background thread; ``.server_address`` is ``(host, port)``, ``.shutdown()`` stops it.

    Args:
        lm: the model to serve.
        host, port: where to listen (port 0 picks a free port).
        vectors: named vectors requests may steer with (``extra_body={"steer": {"vector": NAME, ...}}``).
        api_key: require ``Authorization: Bearer <api_key>`` on ``/v1`` routes.
        any_model_name: accept any ``model`` in requests (else only ``lm.model_id``).
        check_context: refuse prompts longer than the model's context (the command line does).
        **limits: other :class:`~steerlab.serve.ServeConfig` fields (``max_tokens``, ``max_n``,
            ``max_batch``, ``batch_wait_ms``, ``max_prompt_tokens``, ``request_timeout_s``,
            ``read_timeout_s``, ``presets``, ...). As on the command line, a server without an
            ``api_key`` answers loopback ``Host`` / ``Origin`` values only.
    """
    from steerlab.serve import ServeConfig, create_app, start_server

    config = ServeConfig(
        model_names=(lm.model_id,),
        any_model_name=any_model_name,
        api_key=api_key,
        check_context=check_context,
        **limits,
    )
    return start_server(create_app(lm, vectors=vectors, config=config), host, port)
