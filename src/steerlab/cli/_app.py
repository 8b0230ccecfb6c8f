"""The ``steerlab`` Typer app and what every command shares: one-line errors, common options,
model loading, progress bars and argument parsing.

Errors meant for the user (:class:`~steerlab.errors.SteerlabError`, missing files) end a
command with exit code 1 and ONE line ``error: ...`` on stderr, never a traceback; usage
errors exit with code 2, also on one line. torch and transformers are imported inside the
commands, so ``steerlab --help`` stays instant.
"""

from __future__ import annotations

import errno
import math
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from steerlab.errors import InputError, RunStopped, Signalled, SteerlabError
from steerlab.names import METHODS, NORMALIZATIONS, SELECTORS, SITES

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector

# typer ≥ 0.20 vendors click as ``typer._click``; older versions use click itself.
_click: Any = getattr(typer, "_click", None) or __import__("click")
UsageError: type[Exception] = _click.exceptions.UsageError
NoArgsIsHelpError: type[Exception] = getattr(_click.exceptions, "NoArgsIsHelpError", ())  # type: ignore[assignment]

#: Exceptions that end a command with one ``error:`` line instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    SteerlabError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

#: OSErrors of the environment, not of steerlab (a full disk, a read-only file system): one line too.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

#: Prompts `steerlab info` reads activation norms on (short, neutral, varied).
INFO_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain how a bicycle works.",
    "Give me three tips for learning a new language.",
)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


# ---------------------------------------------------------------------------- errors


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_message(e: BaseException) -> str:
    """The single line printed for a user error."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or _one_line(str(e))}"
    if isinstance(e, UsageError):
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return _one_line(e.format_message()) + hint
    return _one_line(str(e)) or type(e).__name__


def fail(e: BaseException, code: int = 1) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit with ``code``."""
    typer.echo(f"error: {error_message(e)}", err=True)
    raise typer.Exit(code)


class _PlainHelp:
    """Mixed into the group and its commands: help that reads as written (see :func:`_plain_help`)."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self, self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _plain_help(None, [option])
        return option


class _Group(_PlainHelp, TyperGroup):
    """The command group: turns user errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunStopped as e:
            fail(e, e.exit_code)
        except USER_ERRORS as e:
            fail(e, 1)
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            fail(e, 1)
        except NoArgsIsHelpError:
            raise
        except UsageError as e:
            fail(e, 2)


# ---------------------------------------------------------------------------- help

#: How a parameter's type reads in ``--help`` (typer's own labels are Python annotations).
_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "FILE", "dir": "DIR"}


def help_type(param: Any, ctx: Any) -> str | None:
    """The type column of ``--help`` for one parameter, as click writes it: ``TEXT``, ``PATH``,
    ``INTEGER RANGE``, ``a|b|c`` for choices; none for a flag; a repeatable option shows the type
    of one value (``list[str]`` → ``TEXT``)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    label = str(type(param).display_type(param, ctx)).strip("<>")  # typer's own label, e.g. <list[str]>
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if label == "bool":
        return None
    if "|" in label:
        return label
    return " ".join(_TYPE_NAMES.get(w, w.upper()) for w in label.split(" "))


def _plain_help(cmd: Any, params: Sequence[Any]) -> None:
    """Help texts as plain text (rich markup would eat ``[ray]``), types as :func:`help_type`."""
    for obj in (cmd, *params):
        for attr in ("help", "short_help"):
            text = getattr(obj, attr, None)
            if text and not getattr(obj, f"_steerlab_escaped_{attr}", False):
                setattr(obj, attr, escape(text))
                setattr(obj, f"_steerlab_escaped_{attr}", True)
    for param in params:
        param.display_type_rich = lambda ctx, p=param: help_type(p, ctx)


class _Command(_PlainHelp, TyperCommand):
    """A command whose help reads as written (see :func:`_plain_help`)."""


class _Typer(typer.Typer):
    """The app: every command is a :class:`_Command` unless it asks for another class."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Find directions in a language model's activations, steer with them, measure what changes.",
)


def _version(value: bool) -> None:
    if value:
        from steerlab import __version__

        typer.echo(f"steerlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """steerlab: steering vectors for Hugging Face causal LMs."""


def main() -> None:
    """Console entry point (``steerlab = steerlab.cli:main``)."""
    try:
        app(prog_name="steerlab")
    except USER_ERRORS as e:  # raised outside a command (should not happen; never a traceback)
        typer.echo(f"error: {error_message(e)}", err=True)
        sys.exit(1)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`~steerlab.errors.Signalled` (a KeyboardInterrupt) inside the block,
    so a run stops on it as on Ctrl-C: one line, rows kept, the resume command."""
    if not hasattr(signal, "SIGTERM"):  # pragma: no cover - every platform steerlab runs on has it
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Signalled(signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def resumable(command: Sequence[str], run: Callable[[], Any]) -> Any:
    """``run()`` under :func:`stop_on_sigterm`; a stopped run's line ends with the exact command
    that resumes it: ``command`` (the words after ``steerlab``) plus ``--run-dir`` if it had none."""
    try:
        with stop_on_sigterm():
            return run()
    except RunStopped as e:
        words = ["steerlab", *command]
        if "--run-dir" not in words:
            words += ["--run-dir", e.run_dir]
        raise e.with_line(e.line(shlex.join(words))) from None


# ---------------------------------------------------------------------------- shared options

ModelArg = Annotated[
    str,
    typer.Argument(
        help="'default' (Gemma 3 270M base), 'instruct' (Qwen2.5-Coder-0.5B-Instruct), a local model folder, a .gguf file or a hub id."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda → mps → cpu), cpu, cuda, mps, ...")]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        help="auto (bf16 where the CPU or GPU has native bf16 matmul, else fp32), float32, bfloat16 or float16."
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass.")]


# Choices come from steerlab.names, where each set is defined once.
Method = Enum("Method", {m: m for m in METHODS}, type=str)  # type: ignore[misc]
Normalization = Enum("Normalization", {n: n for n in NORMALIZATIONS}, type=str)  # type: ignore[misc]
SiteName = Enum("SiteName", {s: s for s in SITES}, type=str)  # type: ignore[misc]


def load_lm(spec: str, device: str = "auto", dtype: str | None = None) -> LanguageModel:
    """Load a model for a command; a path or id transformers cannot load is a user error."""
    from transformers.utils import logging as hf_logging

    from steerlab.models.load import load_model

    hf_logging.disable_progress_bar()  # our own spinner says what is happening
    with stderr.status(f"loading {spec} …"):
        try:
            return load_model(spec, device=device, dtype=dtype)
        except OSError as e:  # transformers: not a model folder, not a hub id, or offline
            raise InputError(f"cannot load model {spec!r}: {_one_line(str(e))}") from None


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    from steerlab.progress import progress_bar as bar

    with bar(label, transient=True, console=stderr, plain_when_piped=False) as update:
        yield update


# ---------------------------------------------------------------------------- parsing


def parse_layers(text: str) -> list[int] | str:
    """``"all"`` or a comma-separated list of layer indices (negatives count from the end)."""
    if text.strip() == "all":
        return "all"
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        layers = []
    if not layers:
        raise InputError(f"--layers: expected 'all' or comma-separated layer indices like 4,6,8, got {text!r}")
    return layers


def parse_selector(text: str) -> str | int:
    """A token selector name, or an integer token index."""
    try:
        return int(text)
    except ValueError:
        pass
    if text not in SELECTORS:
        raise InputError(f"--selector: expected {', '.join(SELECTORS)} or an integer, got {text!r}")
    return text


def parse_vector_spec(spec: str) -> tuple[Path, int | None]:
    """``FILE`` or ``FILE:LAYER`` → (path, layer or None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail.lstrip("-").isdigit():
        return Path(head), int(tail)
    return Path(spec), None


def check_overrides(items: Sequence[str]) -> list[str]:
    """``--set key.path=value`` items, checked for form and repeated keys (the runner parses values)."""
    seen: set[str] = set()
    for item in items:
        key, sep, _ = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set: expected key.path=value, got {item!r}")
        if key in seen:
            raise InputError(f"--set: {key!r} given twice")
        seen.add(key)
    return list(items)


def check_strengths(strengths: Sequence[float]) -> list[float]:
    """``--strength`` values, each finite."""
    for x in strengths:
        if not math.isfinite(x):
            raise InputError(f"--strength must be a finite number, got {x}")
    return list(strengths)


def default_strength(v: SteeringVector) -> float:
    """A strength that is meaningful for the vector's normalisation: a tenth of a typical
    activation (0.1 for ``activation_norm``, 0.1 × the recorded activation norm for ``unit``),
    or the raw contrast itself (1.0) for ``none``."""
    if v.meta.normalization == "activation_norm":
        return 0.1
    if v.meta.normalization == "unit":
        return 0.1 * v.meta.activation_norm if v.meta.activation_norm > 0 else 1.0
    return 1.0


def steering_columns(vectors: Sequence[SteeringVector], strengths: Sequence[float]) -> list[list[float]]:
    """The steered columns, each a list of one strength per vector.

    One vector: every ``--strength`` is its own column (a sweep; default: the vector's
    :func:`default_strength`). Several vectors are applied together in one column: one
    ``--strength`` for all, or exactly one per vector.
    """
    strengths = check_strengths(strengths)
    if not vectors:
        if strengths:
            raise InputError("--strength needs a --vector")
        return []
    if len(vectors) == 1:
        return [[s] for s in strengths] or [[default_strength(vectors[0])]]
    if not strengths:
        return [[default_strength(v) for v in vectors]]
    if len(strengths) == 1:
        return [[strengths[0]] * len(vectors)]
    if len(strengths) != len(vectors):
        raise InputError(
            f"--strength given {len(strengths)} times for {len(vectors)} vectors; give one, or one per "
            "vector (a sweep of strengths takes a single --vector)"
        )
    return [list(strengths)]


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    return path
