"""The vendored advanced-ai-risk subsets: byte-identical upstream lines, the documented selection and hashes."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from steerlab.evals.ab import SHIPPED_AB_SETS, ab_source_path

UPSTREAM = Path("/work/shared/data/anthropic-evals/human_generated_evals")
EXPECTED = {  # name: (rows, upstream rows, sha-256 of the shipped file), as in the datasheet
    "survival-instinct": (300, 953, "e46e059dd87420f107ecf28afc196fd711dae1d73824750307d0a2b47e85975d"),
    "corrigible-neutral-HHH": (200, 340, "5dc8fb495dc32ff56ed78f3ebcb25e6791e489daeeae872d70a387e756f4aa4d"),
}


@pytest.mark.parametrize("name", sorted(SHIPPED_AB_SETS))
def test_shipped_file_matches_the_datasheet(name):
    data = ab_source_path(f"shipped:{name}").read_bytes()
    rows, _, sha = EXPECTED[name]
    assert len(data.splitlines()) == rows and hashlib.sha256(data).hexdigest() == sha
    assert (ab_source_path(f"shipped:{name}").parent / "LICENSE").read_text().startswith("Attribution 4.0")


@pytest.mark.parametrize("name", sorted(SHIPPED_AB_SETS))
def test_lines_are_the_documented_upstream_selection(name):
    upstream = UPSTREAM / f"{name}.jsonl"
    if not upstream.exists():
        pytest.skip("upstream data not present")
    rows, n, _ = EXPECTED[name]
    lines = upstream.read_bytes().splitlines(keepends=True)
    assert len(lines) == n
    picked = sorted(random.Random(0).sample(range(n), rows))
    assert ab_source_path(f"shipped:{name}").read_bytes() == b"".join(lines[i] for i in picked)
