"""The exceptions steerlab raises on purpose.

SteerlabError                 base class: the CLI prints its message on one line, no traceback
├── InputError                a file, column, line or argument the user gave is unusable
├── ConfigError               an experiment config failed validation (names the field path)
├── ArchitectureError         a model whose decoder layers / sites we cannot locate
├── VectorMismatchError       a vector file does not fit the model it is loaded into
├── BackendError              a model backend (local or API) failed in a way the user can fix
├── WorkersLost               an executor can get no worker any more (a Ray cluster lost its nodes)
└── RunStopped                a run stopped part-way; its rows are kept and rerunning resumes it
    └── Interrupted           ... by SIGINT (Ctrl-C) or SIGTERM

Signalled (a KeyboardInterrupt) is how the CLI delivers SIGTERM, so a run stops on it the way
it stops on Ctrl-C.
"""

from __future__ import annotations

import signal


class SteerlabError(Exception):
    """Base class for errors meant for the user, not for a traceback."""


class InputError(SteerlabError, ValueError):
    """A file, column, line or argument the user gave is unusable."""


class ConfigError(SteerlabError, ValueError):
    """An experiment config failed validation; the message names the field path."""


class ArchitectureError(SteerlabError):
    """A model whose decoder layers or sites cannot be located."""


class VectorMismatchError(SteerlabError, ValueError):
    """A steering vector file does not match the model it is being applied to."""


class BackendError(SteerlabError, RuntimeError):
    """A model backend failed (bad response, unreachable server, missing credentials)."""


class WorkersLost(SteerlabError):
    """No worker can be had any more (a Ray cluster lost its nodes, or nothing finished within the
    stall bound); the engine reports it as :class:`RunStopped`."""


class RunStopped(SteerlabError):
    """A run that stopped part-way (a full disk, a lost Ray cluster). Every finished row is on disk
    and rerunning the same command resumes the run; the message says so.

    Attributes:
        reason: what happened, e.g. ``"interrupted"``.
        run_dir: the run directory.
        stage: the stage under way (``None`` before the first stage).
        saved: cells of that stage already saved.
        total: cells of that stage.
        exit_code: the exit code the CLI ends with.
    """

    def __init__(
        self,
        reason: str,
        run_dir: str,
        stage: str | None = None,
        saved: int | None = None,
        total: int | None = None,
        exit_code: int = 1,
    ) -> None:
        self.reason, self.run_dir, self.stage = reason, run_dir, stage
        self.saved, self.total, self.exit_code = saved, total, exit_code
        super().__init__(self.line())

    def with_line(self, text: str) -> RunStopped:
        """The same error with ``text`` as its message (the CLI adds the exact resume command)."""
        self.args = (text,)
        return self

    def line(self, resume: str = "") -> str:
        """The one line: what happened, what is saved, how to resume (``resume``: the exact command)."""
        if self.stage is None or self.saved is None or self.total is None:
            saved = f"no cells run yet (what was made so far is kept in {self.run_dir})"
        else:
            saved = f"{self.saved} of {self.total} cells of {self.stage} saved in {self.run_dir}"
        how = f"rerun the same command to resume: {resume}" if resume else "rerun the same command to resume"
        return f"{self.reason}: {saved}; {how}"


class Interrupted(RunStopped):
    """A run stopped by SIGINT (exit code 130) or SIGTERM (143)."""

    def __init__(
        self, signum: int, run_dir: str, stage: str | None = None, saved: int | None = None, total: int | None = None
    ) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name})", run_dir, stage, saved, total, exit_code=128 + signum)


class Signalled(KeyboardInterrupt):
    """A signal other than SIGINT (SIGTERM) raised as an interrupt; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
