"""Slurm batch jobs: an sbatch array of shard processes and a merge job after it.

    scripts = slurm_scripts(cfg, overrides, shards=8, array_parallelism=4, partition="gpu",
                            gpus_per_task=1, time_limit="04:00:00")

Task i of the array runs ``tts-bench run --generate-only ... shard.index=i
shard.count=N`` (N is passed explicitly, never read from the array's size);
every task writes to the shared store and records an invocation in the run
directory. The merge job (submitted with ``--dependency=afterany:<array id>``)
runs ``tts-bench merge --shards N ...``: it checks that every shard
finished, naming the ones that did not, then grades and reports once.
(hydra-submitit-launcher blocks until every task ends and breaks with Hydra
1.3; tts-bench drives sbatch itself.)
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, RunConfig


@dataclass
class SlurmScripts:
    run_name: str
    folder: Path
    array: str
    merge: str


def slurm_scripts(cfg: RunConfig, overrides: list[str], *, shards: int, array_parallelism: int | None = None,
                  partition: str | None = None, gpus_per_task: int | None = None,
                  time_limit: str | None = None, python: str | None = None,
                  cwd: Path | None = None) -> SlurmScripts:
    from .pipeline import run_name, worker_overrides

    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    name = run_name(cfg)
    cwd = (cwd or Path.cwd()).resolve()
    folder = (cwd / "results" / "slurm" / name).resolve()
    py = shlex.quote(python or sys.executable)
    ov = " ".join(shlex.quote(o) for o in worker_overrides(overrides))
    common = [f"#SBATCH --chdir={cwd}"]
    if partition:
        common.append(f"#SBATCH --partition={partition}")
    if time_limit:
        common.append(f"#SBATCH --time={time_limit}")
    array_range = f"0-{shards - 1}" + (f"%{array_parallelism}" if array_parallelism else "")
    head = ["#!/bin/bash", f"#SBATCH --job-name=tts-{name[:40]}", f"#SBATCH --array={array_range}",
            f"#SBATCH --output={folder}/shard-%a.log", *common]
    if gpus_per_task:
        head.append(f"#SBATCH --gpus-per-task={gpus_per_task}")
    array = "\n".join(head + [
        "set -euo pipefail",
        f"exec {py} -m tts_bench run --no-progress --generate-only {ov} "
        f"shard.index=$SLURM_ARRAY_TASK_ID shard.count={shards}", ""])
    merge = "\n".join(["#!/bin/bash", f"#SBATCH --job-name=tts-merge-{name[:34]}",
                       f"#SBATCH --output={folder}/merge.log", *common, "set -euo pipefail",
                       f"exec {py} -m tts_bench merge --shards {shards} {ov}", ""])
    return SlurmScripts(name, folder, array, merge)


def sbatch(args: list[str]) -> subprocess.CompletedProcess:
    exe = shutil.which("sbatch")
    if exe is None:
        raise ConfigError("sbatch not found: install Slurm's client (Debian: slurm-client) or use --dry-run")
    return subprocess.run([exe, *args], capture_output=True, text=True)


def submit(scripts: SlurmScripts, *, wait: bool) -> tuple[str, str, int | None]:
    """Submit the array, then the merge after it; returns (array id, merge id, merge exit code if waited)."""
    scripts.folder.mkdir(parents=True, exist_ok=True)
    array_path, merge_path = scripts.folder / "array.sbatch", scripts.folder / "merge.sbatch"
    array_path.write_text(scripts.array)
    merge_path.write_text(scripts.merge)
    a = sbatch(["--parsable", str(array_path)])
    if a.returncode != 0:
        raise ConfigError(f"sbatch refused the array: {a.stderr.strip() or a.stdout.strip()}")
    array_id = a.stdout.strip().split(";")[0]
    args = ["--parsable", f"--dependency=afterany:{array_id}"] + (["--wait"] if wait else [])
    m = sbatch([*args, str(merge_path)])
    merge_id = (m.stdout.strip().splitlines() or [""])[0].split(";")[0]
    if not wait and m.returncode != 0:
        raise ConfigError(f"sbatch refused the merge job: {m.stderr.strip() or m.stdout.strip()}")
    return array_id, merge_id, (m.returncode if wait else None)


def missing_shards(run_dir: Path, count: int) -> list[int]:
    """Shards of a ``count``-way split with no finished invocation in the run directory."""
    from .rundir import RunDir

    rd = RunDir(run_dir)
    if not rd.exists():
        return list(range(count))
    done = {inv["shard"][0] for inv in rd.read_manifest().get("invocations", [])
            if inv.get("shard") and inv["shard"][1] == count
            and not inv.get("generation", {}).get("interrupted")}
    return [i for i in range(count) if i not in done]
