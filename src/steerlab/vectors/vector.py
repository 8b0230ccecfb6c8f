"""The steering-vector value type, its provenance metadata, and a set of vectors."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from steerlab.errors import InputError
from steerlab.names import NORMALIZATIONS, SITES

FORMAT_VERSION = "steerlab-vector/2"
READABLE_FORMATS = ("steerlab-vector/1", FORMAT_VERSION)


def data_hash(obj: Any) -> str:
    """sha256 (first 16 hex) of a JSON-serialisable description of the training data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VectorMeta:
    """Where a vector came from. Saved with it; checked when it is loaded into a model."""

    model_id: str  # e.g. "Qwen/Qwen3-8B" or a local path
    config_hash: str  # hash of the architecture-defining config fields (see models.hf.config_hash)
    hidden_size: int
    num_layers: int
    layer: int
    site: str  # one of steerlab.names.SITES
    method: str  # mean_diff | pca | random | melbo | ... (free-form provenance)
    positions: str  # token selector used at extraction, e.g. "last"
    normalization: str  # one of steerlab.names.NORMALIZATIONS
    activation_norm: float  # mean activation norm at (layer, site) on the extraction data
    raw_norm: float  # norm before normalisation
    n_examples: int
    data_hash: str
    steerlab_version: str
    name: str = ""  # unique within a file; "" means "{site}.{layer}"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The vector's name in a file and in a :class:`VectorSet`."""
        return self.name or f"{self.site}.{self.layer}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any, source: str = "vector file") -> VectorMeta:
        """Validate one metadata record; a missing field or an unknown site/normalisation is an InputError."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: vector metadata must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        missing = [n for n in known if n not in d and n not in ("name", "extra")]
        if missing:
            raise InputError(f"{source}: vector metadata lacks {', '.join(missing)}")
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("hidden_size", "num_layers", "layer", "n_examples"):
            if not isinstance(kw[k], int) or isinstance(kw[k], bool):
                raise InputError(f"{source}: vector metadata field {k} must be an integer, got {kw[k]!r}")
        if kw["site"] not in SITES:
            raise InputError(f"{source}: unknown site {kw['site']!r} (known: {', '.join(SITES)})")
        if kw["normalization"] not in NORMALIZATIONS:
            raise InputError(
                f"{source}: unknown normalization {kw['normalization']!r} (known: {', '.join(NORMALIZATIONS)})"
            )
        if not 0 <= kw["layer"] < kw["num_layers"]:
            raise InputError(f"{source}: vector layer {kw['layer']} is outside its model's {kw['num_layers']} layers")
        if not isinstance(kw.get("extra", {}), dict):
            raise InputError(f"{source}: vector metadata field extra must be an object")
        return cls(**kw)


@dataclass(frozen=True)
class SteeringVector:
    """One direction in one model's residual stream.

    ``vector`` is ``[hidden_size]`` float32 on CPU. Pass it straight to
    :class:`~steerlab.interventions.Add` or :class:`~steerlab.interventions.Ablate`: its layer and
    site become their defaults.
    """

    vector: torch.Tensor
    meta: VectorMeta

    @property
    def layer(self) -> int:
        return self.meta.layer

    @property
    def site(self) -> str:
        return self.meta.site

    @property
    def name(self) -> str:
        return self.meta.key

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def scaled(self, factor: float) -> SteeringVector:
        return replace(self, vector=self.vector * factor)

    def check_finite(self, source: str = "vector") -> SteeringVector:
        """``self``, or an InputError when the values hold NaN or infinity."""
        if not torch.isfinite(self.vector).all():
            raise InputError(f"{source}: vector {self.name} has NaN or infinite values")
        return self

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"SteeringVector(name={self.name!r}, layer={m.layer}, site={m.site}, method={m.method}, "
            f"norm={self.norm:.4g}, normalization={m.normalization}, model={m.model_id!r})"
        )


class VectorSet(Mapping[str, SteeringVector]):
    """Vectors by name, as returned by both :func:`~steerlab.vectors.extract` and
    :func:`~steerlab.vectors.load_vectors`.

    A mapping from each vector's name (``"resid_post.6"`` unless it was given one) to the
    vector; an **integer** key looks a vector up by layer, so ``vecs[6]`` is the vector at
    layer 6 (an error if the set holds none or several there — use :meth:`at` or a name).

    Example:
        >>> vecs = extract(lm, pos, neg, layers=[4, 6])
        >>> vecs[6], vecs["resid_post.4"], vecs.layers
    """

    def __init__(self, vectors: Iterable[SteeringVector] = ()) -> None:
        self._by_name: dict[str, SteeringVector] = {}
        for v in vectors:
            if v.name in self._by_name:
                raise InputError(f"two vectors named {v.name!r}; give them distinct names (VectorMeta.name)")
            self._by_name[v.name] = v

    def __getitem__(self, key: str | int) -> SteeringVector:
        if isinstance(key, int) and not isinstance(key, bool):
            found = [v for v in self._by_name.values() if v.layer == key]
            if len(found) != 1:
                what = "no vector" if not found else f"{len(found)} vectors ({', '.join(v.name for v in found)})"
                raise KeyError(f"{what} at layer {key}; layers held: {self.layers}")
            return found[0]
        if not isinstance(key, str):
            raise KeyError(key)
        return self._by_name[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def layers(self) -> list[int]:
        """The distinct layers held, sorted."""
        return sorted({v.layer for v in self._by_name.values()})

    def at(self, layer: int, site: str | None = None) -> list[SteeringVector]:
        """Every vector at ``layer`` (and ``site``, if given), in order."""
        return [v for v in self._by_name.values() if v.layer == layer and (site is None or v.site == site)]

    def __repr__(self) -> str:
        return f"VectorSet({list(self._by_name)})"


def finite_float(x: float, what: str) -> float:
    """``x`` as a float, or an InputError when it is NaN or infinite."""
    x = float(x)
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {x}")
    return x
