"""CLI fixtures: a tiny random Llama with a word-level tokenizer saved to a folder, and a runner.

Not a ``conftest.py``: pytest imports every conftest under the module name ``conftest``, and
tests elsewhere import helpers from the top-level one. Test modules import these fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_model  # tests/conftest.py

#: Words of the tiny tokenizer; with the specials they fill the tiny model's vocabulary of 96.
WORDS = (
    "User Assistant : ? ! . , the a an is are what how why who can you me I it to of and or in on "
    "for with tell write explain give make help please sure sorry cannot will not here this that "
    "sea poem capital france bicycle works three tips learning new language short about do does "
    "no yes good bad day night cat dog red blue green big small fast slow happy sad word story"
).split()
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3: pad, bos, eos (as in tiny_config), unk


def build_tokenizer(vocab_size: int = 96):
    """A word-level fast tokenizer over :data:`WORDS`, padded out to ``vocab_size`` ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"w{len(vocab)}"] = len(vocab)
    assert len(vocab) == vocab_size, "WORDS too long for the tiny vocabulary"
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama (3 layers, hidden 32) with its tokenizer; no chat template."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 with the same hidden size and layer count but another config hash."""
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model("qwen2").save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    """Four contrast pairs in the shipped schema, written with the tiny tokenizer's words."""
    rows = [
        ("tell me a story", "sorry I cannot do that", "sure here is a story"),
        ("how do I make a cat happy", "I will not help", "sure here is how"),
        ("write a poem about the sea", "sorry no", "sure here is a poem"),
        ("give me three tips", "I cannot help with this", "here are three tips"),
    ]
    return write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"id": f"p{i}", "prompt": p, "refusal": r, "compliance": c} for i, (p, r, c) in enumerate(rows)],
    )


@pytest.fixture
def vec_file(runner: CliRunner, tiny_dir: Path, pairs_file: Path, tmp_path: Path) -> Path:
    """A vector file made by ``steerlab extract`` at layers 1 and 2 of the tiny model."""
    from steerlab.cli import app

    out = tmp_path / "v.safetensors"
    res = runner.invoke(
        app,
        [
            "extract",
            str(tiny_dir),
            "--pairs",
            str(pairs_file),
            "--layers",
            "1,2",
            "--out",
            str(out),
            "--dtype",
            "float32",
        ],
    )
    assert res.exit_code == 0, res.output
    return out
