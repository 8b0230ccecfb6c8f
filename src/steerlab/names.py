"""The closed sets of names steerlab accepts, each defined once.

Configs (pydantic), the command line (choices), extraction and the vector-file loader all take
their allowed values from here, so a new site or method is added in one place. The module is
import-light (no torch) so configs and ``--help`` stay fast.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Where in a decoder layer an intervention reads or writes (see steerlab.models.layers).
Site = Literal["resid_pre", "resid_post", "attn_out", "mlp_out", "mlp_raw"]
SITES: tuple[Site, ...] = get_args(Site)

#: How contrast vectors are computed from two sets of activations (steerlab.vectors.extract).
Method = Literal["mean_diff", "pca"]
METHODS: tuple[Method, ...] = get_args(Method)

#: How a vector's length is set (steerlab.vectors.extract).
Normalization = Literal["none", "unit", "activation_norm"]
NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)

#: Named token selectors for extraction; an integer token index is also accepted.
SelectorName = Literal["last", "first", "mean", "post_instruction"]
SELECTORS: tuple[SelectorName, ...] = get_args(SelectorName)


def check_name(value: object, allowed: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError naming the choices."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return str(value)
