"""The Ray executor on a real local Ray instance: same rows as the local executor, nothing lost
when a worker dies mid-run."""

from __future__ import annotations

import json

import pytest

from conftest import save_tiny
from steerlab.experiments import parse_config
from steerlab.experiments.engine.execute import execute
from steerlab.experiments.engine.store import RunStore

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'steerlab[ray]')")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", "qwen3", 4)


def _cfg(model_dir, temperature: float):
    return parse_config(
        {
            "kind": "refusal_study",
            "name": "ray",
            "seed": 3,
            "models": [{"id": str(model_dir), "layers": [1], "device": "cpu"}],
            "data": {"n_pairs": 4, "n_val": 2, "n_test": 3},
            "conditions": {"strengths": [4.0]},
            "generation": {"max_new_tokens": 6, "batch_size": 4, "temperature": temperature},
            "bootstrap_resamples": 100,
        }
    )


def _rows(run) -> dict[str, dict]:
    return {r["key"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}


def _same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        ra, rb = dict(a[key]), dict(b[key])
        assert ra.pop("coherence") == pytest.approx(rb.pop("coherence"), abs=2e-6)
        assert ra == rb, key


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_ray_executor_gives_the_local_executors_rows(ray_instance, model_dir, tmp_path, temperature):
    from steerlab.experiments.engine.ray_executor import RayExecutor

    cfg = _cfg(model_dir, temperature)
    execute(cfg, tmp_path / "local")
    ex = RayExecutor(actors=2)
    try:
        execute(cfg, tmp_path / "ray", executor=ex)
        assert len(ex.actors) == 2 and ex.deaths == 0
    finally:
        ex.close()
    _same(_rows(tmp_path / "local"), _rows(tmp_path / "ray"))
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    remote = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert [e["harmful_refusal"] for e in local["models"][str(model_dir)]["conditions"]] == [
        e["harmful_refusal"] for e in remote["models"][str(model_dir)]["conditions"]
    ]


def test_a_worker_killed_mid_run_loses_nothing(ray_instance, model_dir, tmp_path, monkeypatch):
    from steerlab.experiments.engine.ray_executor import RayExecutor

    cfg = _cfg(model_dir, 0.8)
    execute(cfg, tmp_path / "local")
    ex = RayExecutor(actors=2)
    killed: list[int] = []
    original = RunStore.append

    def append(self, rows):  # after the first batch is written, kill a worker that holds a batch
        original(self, rows)
        if not killed and ex._inflight:
            actor, _ = next(iter(ex._inflight.values()))
            killed.append(ray.get(actor.handle.pid.remote()))
            ray.kill(actor.handle, no_restart=True)

    monkeypatch.setattr(RunStore, "append", append)
    try:
        execute(cfg, tmp_path / "ray", executor=ex)
        assert killed and ex.deaths == 1 and len(ex.actors) == 2  # a replacement took the dead one's place
    finally:
        ex.close()
    lines = (tmp_path / "ray" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["key"] for x in lines})  # no row twice
    _same(_rows(tmp_path / "local"), _rows(tmp_path / "ray"))  # none lost, same values
