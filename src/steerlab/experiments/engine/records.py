"""The typed records the engine plans, moves between processes and writes to disk.

    Cell               one unit of work: a key (unique in the run), the model it runs on, its
                       own seed, and an InterventionSpec; each experiment kind subclasses it
                       with its own fields (the prompt, the condition, ...)
    InterventionSpec   none / add / ablate: which vector (by name), layers, site, positions,
                       strength — per cell, so a batch can mix conditions row by row
    Row                a finished cell: the cell's fields plus the kind's results
    Summary            what a kind computes from all its rows (summary.json)

Every record is a frozen pydantic model with ``extra="forbid"`` and finite floats; the records
written at the top level of a file (rows, summaries) carry a ``version`` field, and a results
file written by another version of a record is refused with a clear error rather than half-read.
A record read back from a file is validated strictly (:func:`read_row`): each value must have
the JSON type the record writes, so a hand-edited ``"refused": "yes"`` is refused, not taken as true.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from steerlab.interventions.spec import NO_INTERVENTION, InterventionSpec


class Record(BaseModel):
    """Base of everything the engine writes: strict, frozen, finite floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Versioned(Record):
    """A record written at the top level of a file (a row, a summary)."""

    version: int = Field(1, description="record version; bump the default when a field changes meaning")


class Cell(Versioned):
    """One unit of work. Kinds subclass it with their own fields."""

    key: str = Field(description="unique id of the cell in its run; finished keys are skipped on resume")
    model: str = Field(description="label of the model the cell runs on")
    seed: int = Field(0, description="the cell's own sampling seed (see cell_seed)")
    intervention: InterventionSpec = Field(NO_INTERVENTION, description="what the cell does to the model")


class Row(Cell):
    """A finished cell. Kinds subclass their cell type and this with their result fields."""


class Summary(Versioned):
    """What a kind computes from its rows. Kinds subclass it."""

    name: str = Field(description="the run's name")


RecordT = TypeVar("RecordT", bound=Record)


def read_row(record: type[RecordT], raw: dict[str, Any]) -> RecordT:
    """``raw`` (one decoded line of a results file) as ``record``, in pydantic's strict JSON mode:
    no string is coerced to a bool or a number, no float to an int. Raises ValidationError."""
    return record.model_validate_json(json.dumps(raw), strict=True)


def cell_seed(base: int, *parts: object) -> int:
    """A stable 31-bit seed from the run seed and a cell's identity (its key, usually).

    Depends only on its arguments — never on the order cells run in, their batch or a resume.
    """
    text = "|".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def make_key(*parts: object) -> str:
    """A cell key from its identifying parts, e.g. ``make_key(model, "eval", condition, prompt_id)``."""
    return "|".join(str(p) for p in parts)
