"""``steerlab serve MODEL``: an OpenAI-compatible server for a local model, steerable per request."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from steerlab.cli._app import DeviceOpt, DtypeOpt, ModelArg, app, load_lm, stderr
from steerlab.errors import InputError

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector


def split_named_vectors(specs: Sequence[str]) -> dict[str, str]:
    """``NAME=FILE`` / ``NAME=FILE:LAYER`` / ``NAME=FILE:VECTOR_NAME`` items → ``{NAME: file spec}``."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, file_spec = spec.partition("=")
        name = name.strip()
        if not sep or not name or not file_spec:
            raise InputError(f"--vector: expected NAME=FILE (or NAME=FILE:LAYER), got {spec!r}")
        if name in out:
            raise InputError(f"--vector: the name {name!r} is given twice")
        out[name] = file_spec
    return out


def load_named_vectors(named: dict[str, str], lm: LanguageModel, *, strict: bool) -> dict[str, SteeringVector]:
    """Read each named vector and check that it fits ``lm``."""
    from steerlab.cli.core import read_vector_specs
    from steerlab.vectors.io import check_compatible

    out: dict[str, SteeringVector] = {}
    for name, file_spec in named.items():
        ((_, v),) = read_vector_specs([file_spec], None)
        check_compatible(v, lm, strict=strict, source=file_spec)
        out[name] = v
    return out


def parse_presets(specs: Sequence[str], vectors: Sequence[str]) -> dict[str, dict[str, object]]:
    """``NAME=VECTOR@STRENGTH`` (or ``NAME=VECTOR@ablate``) items → ``{NAME: steer fields}``."""
    out: dict[str, dict[str, object]] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        vec, at, how = rest.rpartition("@")
        name = name.strip()
        if not sep or not name or not at or not vec or not how:
            raise InputError(f"--preset: expected NAME=VECTOR@STRENGTH (or NAME=VECTOR@ablate), got {spec!r}")
        if name in out:
            raise InputError(f"--preset: the name {name!r} is given twice")
        if vec not in vectors:
            known = ", ".join(vectors) or "none (load one with --vector NAME=FILE)"
            raise InputError(f"--preset {spec}: no vector named {vec!r}; loaded: {known}")
        if how == "ablate":
            out[name] = {"vector": vec, "kind": "ablate"}
            continue
        try:
            strength = float(how)
        except ValueError:
            raise InputError(f"--preset {spec}: the strength {how!r} is not a number") from None
        out[name] = {"vector": vec, "strength": strength}
    return out


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    model: ModelArg,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. Anything but loopback needs --api-key (or --allow-unauthenticated)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8000,
    vector: Annotated[
        list[str] | None,
        typer.Option(
            "--vector",
            help="NAME=FILE, NAME=FILE:LAYER or NAME=FILE:VECTOR_NAME (repeatable): a vector requests "
            "may steer with by NAME.",
        ),
    ] = None,
    allow_other_model: Annotated[
        bool, typer.Option("--allow-other-model", help="Load vectors made for a model with another config.")
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="STEERLAB_API_KEY",
            show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on /v1 routes (prefer the environment variable: a command "
            "line is visible to other users).",
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool, typer.Option("--allow-unauthenticated", help="Serve a non-loopback address without a key.")
    ] = False,
    served_model_name: Annotated[
        list[str] | None,
        typer.Option(
            "--served-model-name", help="Name(s) requests use for the model (default: MODEL and the model's id)."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens a request may ask for.")] = 1024,
    default_max_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="max_tokens when a request gives none (default: 256, or --max-tokens if smaller)."),
    ] = None,
    max_n: Annotated[int, typer.Option(min=1, help="Largest n (samples per request).")] = 8,
    max_batch: Annotated[int, typer.Option(min=1, help="Most rows in one forward pass.")] = 16,
    batch_wait_ms: Annotated[float, typer.Option(min=0, help="How long a request waits for batch-mates.")] = 20.0,
    max_request_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 1_000_000,
    max_queue: Annotated[int, typer.Option(min=1, help="Most rows waiting; more get HTTP 429.")] = 256,
    max_prompt_tokens: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most tokens in one prompt (longer: HTTP 400 context_length_exceeded). The default keeps one "
            "request under about a minute of a 2-core CPU on the default model (docs/serve.md).",
        ),
    ] = 2048,
    request_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds a request may take, queue included (then 503; its rows stop).")
    ] = 120.0,
    read_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds a client has to send a request's headers, and its body.")
    ] = 10.0,
    preset: Annotated[
        list[str] | None,
        typer.Option(
            "--preset",
            help="NAME=VECTOR@STRENGTH or NAME=VECTOR@ablate (repeatable): a model name that steers every request "
            "with a loaded vector (for clients that cannot send extra_body, e.g. lm-eval).",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Without a key only loopback Host/Origin values are answered (against DNS rebinding); this adds "
            "a name (repeatable).",
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request to stderr.")] = True,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
) -> None:
    """Serve MODEL over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models).

    Requests may steer with the loaded vectors: extra_body={"steer": {"vector": NAME, "strength": 0.1}}.
    See docs/serve.md.
    """
    try:
        from steerlab.serve import ServeConfig, create_app, run_server
    except ImportError as e:
        raise InputError(f"steerlab serve needs FastAPI and uvicorn: pip install 'steerlab[serve]' ({e})") from None

    if not is_loopback(host) and not api_key and not allow_unauthenticated:
        raise InputError(
            f"--host {host} would expose the model to the network without a key; set "
            "STEERLAB_API_KEY (or --api-key), or pass --allow-unauthenticated"
        )
    if max_n > max_batch:
        raise InputError(f"--max-n ({max_n}) must not exceed --max-batch ({max_batch})")
    if default_max_tokens is not None and default_max_tokens > max_tokens:
        raise InputError(f"--default-max-tokens ({default_max_tokens}) must not exceed --max-tokens ({max_tokens})")
    named = split_named_vectors(vector or [])
    preset_fields = parse_presets(preset or [], list(named))
    lm = load_lm(model, device, dtype)
    vectors = load_named_vectors(named, lm, strict=not allow_other_model)
    names = tuple(dict.fromkeys(served_model_name or [model, lm.model_id]))
    clash = sorted(set(preset_fields) & set(names))
    if clash:
        raise InputError(f"--preset: {', '.join(clash)} is already a name of the model")
    from pydantic import ValidationError

    from steerlab.serve.protocol import SteerSpec

    try:
        presets = {n: SteerSpec.model_validate(f) for n, f in preset_fields.items()}
    except ValidationError as e:
        raise InputError(f"--preset: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    hosts = tuple(allowed_host or ())
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        hosts = (*hosts, host)
    config = ServeConfig(
        model_names=names,
        api_key=api_key or None,
        max_tokens=max_tokens,
        default_max_tokens=default_max_tokens,
        max_n=max_n,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        max_request_bytes=max_request_bytes,
        max_queue=max_queue,
        max_prompt_tokens=max_prompt_tokens,
        request_timeout_s=request_timeout,
        read_timeout_s=read_timeout,
        presets=presets,
        allowed_hosts=hosts,
    )

    def ready(address: tuple[str, int]) -> None:
        h, p = address
        shown = f"[{h}]" if ":" in h else h
        stderr.print(
            f"serving {names[0]} at http://{shown}:{p}/v1"
            f"{' (API key required)' if api_key else ''}; vectors: {', '.join(vectors) or 'none'}"
            f"{'; presets: ' + ', '.join(presets) if presets else ''}"
        )

    run_server(create_app(lm, vectors=vectors, config=config), host, port, on_ready=ready, access_log=access_log)
