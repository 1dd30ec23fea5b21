"""launcher=gpus on CPU: scripted workers with fake device ids, a crashed worker restarted,
one evaluation at the end that matches a single-process run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, write_arith_script

from tts_bench.config import ConfigError, compose
from tts_bench.runner.launcher import resolve_devices, worker_groups
from tts_bench.store import GenerationStore


def _args(script: Path, *extra: str) -> list[str]:
    return ["run", "--no-progress", "engine=scripted", f"engine.script={script}", "dataset.size=6",
            "bootstrap=200", "plot=false", *extra]


def _only_run(cwd: Path) -> Path:
    (run,) = (cwd / "results" / "runs").iterdir()
    return run


def test_device_groups_and_config_errors(monkeypatch):
    assert worker_groups(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert resolve_devices(None) == ["4", "5", "6"]
    assert resolve_devices(["a", "b"]) == ["a", "b"]
    with pytest.raises(ConfigError, match="do not split into groups"):
        compose(["launcher=gpus", "launcher.devices=[a,b,c]", "launcher.gpus_per_worker=2"])
    with pytest.raises(ConfigError, match="drop shard.index/shard.count"):
        compose(["launcher=gpus", "shard.count=2"])


@pytest.mark.parametrize("crash", [False, True])
def test_gpu_workers_share_the_plan_and_match_one_process(tmp_path, crash):
    script = write_arith_script(tmp_path / "script.jsonl")
    ref = tmp_path / "ref"
    ref.mkdir()
    cli(*_args(script), cwd=ref)
    work = tmp_path / "work"
    work.mkdir()
    extra = ["launcher=gpus", "launcher.devices=[a,b,c,d]", "launcher.gpus_per_worker=2"]
    if crash:  # the first worker to reach 5 samples dies (exit 3); the launcher restarts it
        extra += ["engine.fail_once_after=5", f"engine.fail_marker={work / 'crashed'}"]
    out = cli(*_args(script, *extra), cwd=work).stdout
    assert "launcher=gpus: 2 worker(s) x 2 device(s): [a,b], [c,d]" in out
    if crash:
        assert "exited with 3; restart 1/2" in out
    run = _only_run(work)
    inv = json.loads((run / "manifest.json").read_text())["invocations"]
    assert sorted({(tuple(i["shard"]), i["devices"]) for i in inv}) == [((0, 2), "a,b"), ((1, 2), "c,d")]
    store = GenerationStore(work / "results" / "store")
    (fp,) = store.partitions()
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in store.shards(fp))
    assert rows == len(store.existing_keys(fp)) == 48  # nothing generated twice, nothing lost
    a = pd.read_csv(_only_run(ref) / "metrics.csv")
    b = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
