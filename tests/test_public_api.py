"""The public surface is exactly what we mean it to be, and importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import steerlab

EXPECTED = {
    "Ablate",
    "Add",
    "Capture",
    "Example",
    "LanguageModel",
    "LastK",
    "Span",
    "SteerlabError",
    "SteeringVector",
    "__version__",
    "demo",
    "export_gguf",
    "extract",
    "intervene",
    "load_model",
    "load_vector",
    "load_vectors",
    "random_like",
    "register_architecture",
    "PairCounts",
    "fit_thurstonian",
    "run_active_learning",
    "run_experiment",
    "save_vectors",
}


def test_public_names_are_exactly_the_intended_ones():
    assert set(steerlab.__all__) == EXPECTED
    for name in EXPECTED - {"__version__"}:
        assert getattr(steerlab, name) is not None


def test_import_does_not_load_torch():
    code = "import sys, steerlab; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
