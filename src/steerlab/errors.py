"""The exceptions steerlab raises on purpose.

SteerlabError                 base class: the CLI prints its message on one line, no traceback
├── InputError                a file, column, line or argument the user gave is unusable
├── ConfigError               an experiment config failed validation (names the field path)
├── ArchitectureError         a model whose decoder layers / sites we cannot locate
├── VectorMismatchError       a vector file does not fit the model it is loaded into
└── BackendError              a model backend (local or API) failed in a way the user can fix
"""

from __future__ import annotations


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
