"""Items (the things being compared or rated) and their origin labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from steerlab.errors import InputError


@dataclass(frozen=True)
class Item:
    """One thing being compared or rated (a task, a completion, ...).

    Attributes:
        id: Unique identifier, e.g. ``"bailbench_632"``.
        origin: Group label such as the dataset the item came from (``"bailbench"``).
    """

    id: str
    origin: str = ""


def check_unique_ids(ids: Sequence[str]) -> None:
    """Raise InputError naming the first duplicated id, if any."""
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise InputError(f"duplicate item id {i!r}")
        seen.add(i)


def items_to_frame(items: Iterable[Item]) -> pd.DataFrame:
    """Items as a DataFrame with columns ``id`` and ``origin``.

    Args:
        items: The items, in order.
    """
    items = list(items)
    check_unique_ids([it.id for it in items])
    return pd.DataFrame({"id": [it.id for it in items], "origin": [it.origin for it in items]})


def items_from_frame(frame: pd.DataFrame) -> list[Item]:
    """Inverse of :func:`items_to_frame`; ``origin`` is optional.

    Args:
        frame: A DataFrame with an ``id`` column and optionally ``origin``.
    """
    if "id" not in frame.columns:
        raise InputError("items frame needs an 'id' column")
    origins = frame["origin"] if "origin" in frame.columns else [""] * len(frame)
    items = [Item(str(i), str(o)) for i, o in zip(frame["id"], origins)]
    check_unique_ids([it.id for it in items])
    return items


def origin_map(items: Iterable[Item]) -> dict[str, str]:
    """Map item id -> origin label.

    Args:
        items: The items.
    """
    return {it.id: it.origin for it in items}
