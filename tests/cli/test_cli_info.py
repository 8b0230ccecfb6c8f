"""`steerlab info` and the instant `--help`."""

from __future__ import annotations

import re
import subprocess
import sys

from cli_fixtures import runner, tiny_dir  # noqa: F401 (fixtures)
from cli_reference import layer_outputs, load, prompt_text

from steerlab.cli import INFO_PROMPTS, app


def _norm_rows(stdout: str) -> dict[int, tuple[float, float]]:
    rows = {}
    for line in stdout.split("mean resid_post norm", 1)[1].splitlines():
        m = re.match(r"\W*(\d+)\W+([\d.]+)\W+([\d.]+)\W*$", line)
        if m:
            rows[int(m[1])] = (float(m[2]), float(m[3]))
    return rows


def test_info_facts(runner, tiny_dir):
    res = runner.invoke(app, ["info", str(tiny_dir)])
    assert res.exit_code == 0, res.output
    from steerlab.models.loading import resolve_dtype

    dtype, why = resolve_dtype("auto", "cpu")  # bfloat16 on this CI's AVX512-BF16 CPU
    for fact in ("llama (LlamaForCausalLM)", "hidden size", "plain fallback", f"cpu / {dtype}", why[:30]):
        assert fact in res.stdout
    assert re.search(r"layers\s*│\s*3\b", res.stdout)
    assert re.search(r"post-instruction tokens\s*│\s*2\b", res.stdout)  # "Assistant", ":"


def test_info_norms_match_forward_hooks(runner, tiny_dir):
    res = runner.invoke(app, ["info", str(tiny_dir)])
    assert res.exit_code == 0, res.output
    model, tok = load(str(tiny_dir))
    per_prompt = [layer_outputs(model, tok(prompt_text(p))["input_ids"]) for p in INFO_PROMPTS]
    rows = _norm_rows(res.stdout)
    assert sorted(rows) == [0, 1, 2]
    for layer, (last, mean) in rows.items():
        ref_last = sum(float(h[layer][-1].norm()) for h in per_prompt) / len(per_prompt)
        ref_mean = sum(float(h[layer].norm(dim=-1).mean()) for h in per_prompt) / len(per_prompt)
        assert abs(last - ref_last) <= 0.0051 and abs(mean - ref_mean) <= 0.0051


def test_info_with_chat_template(runner, tiny_dir, tmp_path):
    """A tokenizer with a template is reported as such, with its post-instruction token count."""
    import shutil

    model_dir = tmp_path / "templated"
    shutil.copytree(tiny_dir, model_dir)
    _, tok = load(str(tiny_dir))
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
        "{% if add_generation_prompt %}Assistant : sure{% endif %}"
    )
    tok.save_pretrained(model_dir)
    res = runner.invoke(app, ["info", str(model_dir)])
    assert res.exit_code == 0, res.output
    assert "tokenizer chat template" in res.stdout
    assert re.search(r"post-instruction tokens\s*│\s*4\b", res.stdout)  # ". Assistant : sure"


def test_help_is_instant_and_imports_no_torch():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom steerlab.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0 and 'generate' in r.stdout\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
