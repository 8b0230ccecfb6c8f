"""A Ray cluster that loses its only node: the driver stops with one line and the resume command,
instead of waiting forever (issue 19). Runs ``steerlab run --executor ray`` in a subprocess that
kills its own raylet after the first batch is written; the subprocess starts and stops its own Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import save_tiny

pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'steerlab[ray]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find Ray's processes"),
]

# Kill the raylet (SIGKILL, as the OOM killer or a lost machine would) right after the first batch
# is written, and note every process of this Ray instance so the test can check they are all gone.
_DRIVER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from steerlab.experiments.engine.store import RunStore
    from steerlab.cli import main

    pids_file = Path(sys.argv[1])
    original = RunStore.append

    def descendants(pid):
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [pid]
        while todo:
            kids = children.get(todo.pop(), [])
            out += kids
            todo += kids
        return out

    def append(self, rows):
        original(self, rows)
        if not pids_file.exists():
            import ray
            node = ray._private.worker._global_node
            raylet = node.all_processes["raylet"][0].process.pid
            pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
            pids_file.write_text(json.dumps(sorted(set(pids + descendants(raylet)))))
            os.kill(raylet, signal.SIGKILL)
            with open(pids_file.with_suffix(".killed"), "w") as f:
                f.write(repr(time.time()))
            # Actor calls go straight to the actors, which outlive their raylet for a moment: give
            # Ray the time to call the node dead, so the run cannot simply finish on them.
            time.sleep(5)

    RunStore.append = append
    sys.argv = ["steerlab", *sys.argv[2:]]
    main()
""")


def _running(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_lost_ray_node_stops_the_run_with_the_resume_command(tmp_path):
    model = save_tiny(tmp_path / "model", "llama", 0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "kind": "refusal_study",
                "name": "lost",
                "models": [{"id": str(model), "layers": [1], "device": "cpu"}],
                "data": {"n_pairs": 4, "n_val": 2, "n_test": 3},
                "conditions": {"strengths": [4.0]},
                "generation": {"max_new_tokens": 4, "batch_size": 2},
                "bootstrap_resamples": 100,
            }
        )
    )
    run, pids_file = tmp_path / "run", tmp_path / "ray-pids.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), RAY_ADDRESS="")
    # Ray's defaults take ~15 s to declare a silent node dead; these make it ~3 s.
    env.update(RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="500")
    env.update(RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="0")
    command = ["run", str(cfg), "--run-dir", str(run), "--executor", "ray", "--actors", "2"]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(pids_file), *command],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        cwd=tmp_path,
    )
    took = time.monotonic() - start
    after_kill = time.time() - float(pids_file.with_suffix(".killed").read_text()) if pids_file.exists() else None
    try:
        assert pids_file.exists(), proc.stderr[-3000:]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        saved = len((run / "results.jsonl").read_text().splitlines())
        (line,) = errors
        # the reason, how much is kept, and the exact command to resume (the same one)
        assert "no live node" in line or "cannot be reached" in line, line
        assert f"saved in {run}" in line, line
        assert line.endswith(f"rerun the same command to resume: steerlab {' '.join(command)}"), line
        assert saved >= 2  # the batch written before the raylet died is on disk
        assert took < 120 and after_kill is not None and after_kill < 60, (took, after_kill)
    finally:
        alive = [p for p in json.loads(pids_file.read_text()) if _running(p)] if pids_file.exists() else []
        for pid in alive:
            os.kill(pid, 9)
    assert alive == [], f"Ray processes left running: {alive}"
