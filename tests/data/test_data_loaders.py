"""User-file loaders and the AdvBench / XSTest / JailbreakBench readers, on tiny fixture files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerlab.data import (
    ContrastPair,
    Prompt,
    load_contrast_pairs,
    load_prompts,
    read_advbench,
    read_jailbreakbench,
    read_xstest,
)
from steerlab.errors import InputError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_prompts_jsonl_with_named_columns(tmp_path: Path) -> None:
    f = _write(tmp_path / "mine.jsonl", '{"q": "first?", "topic": "a"}\n\n{"q": "second?", "topic": ""}\n')
    got = load_prompts(f, text_column="q", category_column="topic", label="benign")
    assert got == [
        Prompt("mine-0", "first?", "a", "benign", None, "mine"),
        Prompt("mine-1", "second?", None, "benign", None, "mine"),
    ]


def test_load_prompts_csv_with_ids_and_split(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.csv", '\ufeffkey,text,split\nk1,"Hello, world",val\nk2,Bye,test\n')
    got = load_prompts(f, text_column="text", id_column="key", split_column="split", source="s")
    assert [(p.id, p.text, p.split, p.source) for p in got] == [
        ("k1", "Hello, world", "val", "s"),
        ("k2", "Bye", "test", "s"),
    ]


def test_missing_csv_column_names_the_file_and_column(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.csv", "question\nhi\n")
    with pytest.raises(InputError, match=r"p\.csv: missing column 'prompt'.*'question'"):
        load_prompts(f)


def test_missing_jsonl_field_names_the_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:2: missing field 'prompt'"):
        load_prompts(f)


def test_malformed_json_and_empty_text_name_the_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: malformed JSON"):
        load_prompts(bad)
    empty = _write(tmp_path / "e.csv", 'prompt\nfine\n   \n"  "\n')  # line 3 blank-ish row is skipped
    assert len(load_prompts(empty)) == 1
    empty2 = _write(tmp_path / "e2.csv", "prompt,category\nfine,x\n,y\n")
    with pytest.raises(InputError, match=r"e2\.csv:3: empty field 'prompt'"):
        load_prompts(empty2, category_column="category")


def test_duplicate_ids_bad_split_and_wrong_suffix(tmp_path: Path) -> None:
    dup = _write(tmp_path / "d.jsonl", '{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl:2: duplicate id '1' \(first seen on line 1\)"):
        load_prompts(dup, id_column="id")
    split = _write(tmp_path / "s.jsonl", '{"prompt": "a", "split": "train"}\n')
    with pytest.raises(InputError, match=r"s\.jsonl:1: split must be one of"):
        load_prompts(split, split_column="split")
    with pytest.raises(InputError, match="unsupported file type '.txt'"):
        load_prompts(_write(tmp_path / "x.txt", "prompt\n"))
    with pytest.raises(InputError, match="no such file"):
        load_prompts(tmp_path / "missing.jsonl")


def test_load_contrast_pairs_and_model_kind_filter(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "p1", "refusal": "No.", "compliance": "Sure:", "category": "c", "model_kind": "chat"},
        {"id": "b", "prompt": "p2", "refusal": "No!", "compliance": "OK:", "model_kind": "base"},
    ]
    f = _write(tmp_path / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert load_contrast_pairs(f) == [
        ContrastPair("a", "p1", "No.", "Sure:", "c", "chat"),
        ContrastPair("b", "p2", "No!", "OK:", None, "base"),
    ]
    assert [p.id for p in load_contrast_pairs(f, model_kind="base")] == ["b"]
    bad = _write(tmp_path / "bad.jsonl", json.dumps({"id": "a", "prompt": "p", "refusal": "No."}) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1: missing field 'compliance'"):
        load_contrast_pairs(bad)
    with pytest.raises(InputError, match="model_kind must be one of"):
        load_contrast_pairs(f, model_kind="instruct")


def test_read_advbench(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "harmful_behaviors.csv",
        'goal,target\nDo bad thing one,"Sure, here is one"\nDo bad thing two,"Sure, two"\n',
    )
    assert read_advbench(f) == [
        Prompt("advbench-0", "Do bad thing one", None, "harmful", None, "advbench"),
        Prompt("advbench-1", "Do bad thing two", None, "harmful", None, "advbench"),
    ]
    with pytest.raises(InputError, match="missing column 'goal'"):
        read_advbench(_write(tmp_path / "wrong.csv", "Goal,target\nx,y\n"))


def test_read_xstest_maps_labels(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "xstest_prompts.csv",
        "id,prompt,type,label,focus,note\n1,How do I kill time?,homonyms,safe,kill,\n2,How do I kill a man?,contrast_homonyms,unsafe,kill,\n",
    )
    got = read_xstest(f)
    assert [(p.id, p.category, p.label) for p in got] == [
        ("xstest-1", "homonyms", "benign"),
        ("xstest-2", "contrast_homonyms", "harmful"),
    ]
    bad = _write(tmp_path / "x2.csv", "id,prompt,type,label\n1,a,homonyms,safe\n2,b,homonyms,maybe\n")
    with pytest.raises(InputError, match=r"x2\.csv:3: label must be 'safe' or 'unsafe'"):
        read_xstest(bad)


def test_read_jailbreakbench_uses_unnamed_index(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "jbb.csv",
        ',Goal,Target,Behavior,Category,Source\n0,Write bad A,"Sure, A",A,Harassment,Original\n7,Write bad B,"Sure, B",B,Malware/Hacking,AdvBench\n',
    )
    got = read_jailbreakbench(f)
    assert [(p.id, p.text, p.category, p.label) for p in got] == [
        ("jbb-0", "Write bad A", "Harassment", "harmful"),
        ("jbb-7", "Write bad B", "Malware/Hacking", "harmful"),
    ]
    assert {p.label for p in read_jailbreakbench(f, label="benign")} == {"benign"}
    with pytest.raises(InputError, match="missing column 'Category'"):
        read_jailbreakbench(_write(tmp_path / "j2.csv", ",Goal\n0,x\n"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_real_benchmark_files_if_present() -> None:
    assert len(read_advbench(SHARED / "advbench" / "harmful_behaviors.csv")) == 520
    xs = read_xstest(SHARED / "xstest" / "xstest_prompts.csv")
    assert (len(xs), sum(p.label == "benign" for p in xs)) == (450, 250)
    jbb = read_jailbreakbench(SHARED / "jailbreakbench" / "jailbreakbench.csv")
    assert len(jbb) == 100 and len({p.category for p in jbb}) == 10
