"""`tts-bench submit slurm` and `tts-bench merge`: the scripts, the merge's shard check, and a
3-shard array of the embedded model on a real single-node Slurm (scripts/slurm_local.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import REPO, cli, write_arith_script


def test_dry_run_prints_the_array_and_the_merge(tmp_path):
    out = cli("submit", "slurm", "dataset.size=3", "budget.n=2", "shard.count=9", "--shards", "3",
              "--array-parallelism", "2", "--partition", "gpu", "--gpus-per-task", "1", "--time", "01:00:00",
              "--dry-run", cwd=tmp_path).stdout
    assert "#SBATCH --array=0-2%2" in out and "#SBATCH --partition=gpu" in out
    assert "#SBATCH --gpus-per-task=1" in out and "#SBATCH --time=01:00:00" in out
    # N is passed explicitly; the user's own shard.count is dropped.
    assert "shard.index=$SLURM_ARRAY_TASK_ID shard.count=3" in out and "shard.count=9" not in out
    assert "-m tts_bench merge --shards 3 dataset.size=3 budget.n=2" in out
    assert not (tmp_path / "results" / "slurm").exists()  # nothing written or submitted
    multi = cli("submit", "slurm", "-m", "budget.n=2,4", "--shards", "2", "--dry-run", cwd=tmp_path).stdout
    assert multi.count("array.sbatch") == 2 and "parallel-n2__" in multi and "parallel-n4__" in multi


def test_merge_names_the_shards_that_did_not_finish(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    args = ["engine=scripted", f"engine.script={script}", "dataset.size=6", "bootstrap=100", "plot=false"]
    cli("run", "--no-progress", "--generate-only", *args, "shard.index=1", "shard.count=3", cwd=tmp_path)
    out = cli("merge", "--shards", "3", *args, cwd=tmp_path, check=False)
    assert out.returncode == 2 and "2 of 3 shards did not finish: 0, 2" in out.stderr
    for i in (0, 2):
        cli("run", "--no-progress", "--generate-only", *args, f"shard.index={i}", "shard.count=3",
            cwd=tmp_path)
    done = cli("merge", "--shards", "3", *args, cwd=tmp_path)
    assert "pass@k" in done.stdout


def _slurm_env() -> dict | None:
    if os.geteuid() != 0 or not all(shutil.which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    proc = subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "start"], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"single-node Slurm did not start: {proc.stderr.strip()}")
    conf = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    return {**os.environ, "SLURM_CONF": conf}


@pytest.mark.model
def test_three_shard_array_on_real_slurm_matches_one_process(tmp_path):
    env = _slurm_env()
    if env is None:
        pytest.skip("needs root and Debian's slurmctld, slurmd, slurm-client and munge "
                    "(.ci/run installs them)")
    # One sequence at a time: batched llama.cpp decoding is reproducible for the same batch
    # composition, and shards compose their batches differently (README, Engines).
    args = ["dataset.size=3", "budget.n=2", "strategy.max_tokens=16", "bootstrap=100", "plot=false",
            "engine.parallel_sequences=1"]
    ref = tmp_path / "ref"
    ref.mkdir()
    cli("run", "--no-progress", *args, cwd=ref)
    work = tmp_path / "work"
    work.mkdir()
    try:
        out = cli("submit", "slurm", *args, "--shards", "3", "--wait", cwd=work, env=env).stdout
    finally:  # leave no scheduler daemons behind
        subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "stop"], timeout=60)
    assert "(3 shards) -> merge" in out and "merge exited 0" in out
    (run,) = (work / "results" / "runs").iterdir()
    logs = sorted(p.name for p in (work / "results" / "slurm" / run.name).glob("*.log"))
    assert logs == ["merge.log", "shard-0.log", "shard-1.log", "shard-2.log"]
    (ref_run,) = (ref / "results" / "runs").iterdir()
    pd.testing.assert_frame_equal(pd.read_csv(ref_run / "metrics.csv"), pd.read_csv(run / "metrics.csv"))
    a = pd.read_parquet(ref_run / "samples.parquet")[["key", "text"]].sort_values("key", ignore_index=True)
    b = pd.read_parquet(run / "samples.parquet")[["key", "text"]].sort_values("key", ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
