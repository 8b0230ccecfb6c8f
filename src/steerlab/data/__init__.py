"""Prompt sets and contrast pairs: the data shipped with steerlab and readers for users' files.

See ``docs/data.md`` and the datasheets next to the JSONL files in this folder.
"""

from steerlab.data.loaders import (
    ContrastPair,
    Prompt,
    load_contrast_pairs,
    load_prompts,
    load_shipped,
    read_advbench,
    read_jailbreakbench,
    read_xstest,
    shipped_path,
)

__all__ = [
    "ContrastPair",
    "Prompt",
    "load_contrast_pairs",
    "load_prompts",
    "load_shipped",
    "read_advbench",
    "read_jailbreakbench",
    "read_xstest",
    "shipped_path",
]
