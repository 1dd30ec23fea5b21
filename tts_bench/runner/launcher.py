"""`launcher=gpus`: one worker process per group of GPUs on this node, then one evaluation.

    tts-bench run launcher=gpus launcher.gpus_per_worker=2 engine=vllm engine.tensor_parallel_size=2 ...

Devices come from ``launcher.devices``, else CUDA_VISIBLE_DEVICES, else
``nvidia-smi -L``. They are split into groups of ``gpus_per_worker``; worker
i runs ``tts-bench run --generate-only ... shard.index=i shard.count=W`` with
``CUDA_VISIBLE_DEVICES`` set to its group, its own port range
(``VLLM_PORT``/``MASTER_PORT`` from ``base_port + 100 i``) and a staggered
start. Workers share the store, so a crashed worker is restarted (up to
``max_restarts``) and skips what is stored. Each writes its progress to
``progress/worker-<i>.json`` in the run directory and its output to
``logs/worker-<i>.log``; the launcher shows one aggregated progress bar and,
once every worker finished, grades and reports once. Not vLLM's
``data_parallel_size`` (offline data parallel hangs: vLLM #22575, #23534).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..config import ConfigError, RunConfig
from .rundir import GenerationStats


def resolve_devices(devices) -> list[str]:
    if devices:
        return [str(d) for d in devices]
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if env:
        return [d.strip() for d in env.split(",") if d.strip()]
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
        n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        if n:
            return [str(i) for i in range(n)]
    raise ConfigError("launcher=gpus found no GPUs: set launcher.devices=[0,1,...] or CUDA_VISIBLE_DEVICES")


def worker_groups(devices: list[str], per_worker: int) -> list[list[str]]:
    if len(devices) % per_worker:
        raise ConfigError(f"{len(devices)} devices do not split into groups of "
                          f"launcher.gpus_per_worker={per_worker}")
    return [devices[i:i + per_worker] for i in range(0, len(devices), per_worker)]


def launch_gpus(cfg: RunConfig, overrides: list[str], *, progress: bool = True, console=None):
    from .pipeline import RunResult, evaluate, run_name, worker_overrides

    lc = cfg.launcher
    groups = worker_groups(resolve_devices(lc.devices), lc.gpus_per_worker)
    count = len(groups)
    run_dir = Path(cfg.runs_dir) / run_name(cfg)
    prog_dir, log_dir = run_dir / "progress", run_dir / "logs"
    shutil.rmtree(prog_dir, ignore_errors=True)
    prog_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    base = worker_overrides(overrides)  # this config; each worker adds its shard and runs locally

    def start(i: int) -> subprocess.Popen:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(groups[i]),
               "VLLM_PORT": str(lc.base_port + 100 * i), "MASTER_PORT": str(lc.base_port + 100 * i + 1),
               "TTS_BENCH_PROGRESS_FILE": str(prog_dir / f"worker-{i}.json")}
        cmd = [sys.executable, "-m", "tts_bench", "run", "--no-progress", "--generate-only", *base,
               f"shard.index={i}", f"shard.count={count}"]
        log = open(log_dir / f"worker-{i}.log", "a")
        log.write(f"== start {time.strftime('%H:%M:%S')} devices {env['CUDA_VISIBLE_DEVICES']}\n")
        log.flush()
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    if console is not None:
        console.print(f"launcher=gpus: {count} worker(s) x {lc.gpus_per_worker} device(s): "
                      + ", ".join(f"[{','.join(g)}]" for g in groups) + f"; logs in {log_dir}",
                      markup=False, highlight=False)
    t0 = time.perf_counter()
    procs: list[subprocess.Popen | None] = []
    for i in range(count):
        procs.append(start(i))
        if lc.stagger_s and i < count - 1:
            time.sleep(lc.stagger_s)
    restarts = [0] * count
    failed: list[int] = []
    bar = _Aggregate(prog_dir, enabled=progress)
    gen = GenerationStats()
    try:
        with bar:
            while any(p is not None for p in procs):
                time.sleep(0.3)
                bar.refresh()
                for i, p in enumerate(procs):
                    if p is None or p.poll() is None:
                        continue
                    if p.returncode == 0:
                        procs[i] = None
                    elif restarts[i] < lc.max_restarts:
                        restarts[i] += 1
                        if console is not None:
                            console.print(f"[yellow]worker {i} exited with {p.returncode}; restart "
                                          f"{restarts[i]}/{lc.max_restarts} (it skips what is stored)[/]")
                        procs[i] = start(i)
                    else:
                        failed.append(i)
                        procs[i] = None
            bar.refresh()
    except KeyboardInterrupt:
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(2)
        for p in procs:
            if p is not None:
                p.wait(timeout=60)
        gen.interrupted = True
    gen.generated, gen.completion_tokens = bar.done, bar.tokens
    gen.seconds = time.perf_counter() - t0
    gen.errors = [f"worker {i} failed {restarts[i] + 1} time(s); see {log_dir / f'worker-{i}.log'}"
                  for i in failed]
    if gen.interrupted or failed:
        res = RunResult(run_dir, None, gen, {"generate_s": gen.seconds}, complete=False)
        if failed and console is not None:
            console.print(f"[red]{'; '.join(gen.errors)}; rerun the same command to resume[/]")
        return res
    return evaluate(run_dir, cfg=cfg, timings={"generate_s": gen.seconds}, gen=gen, console=console)


class _Aggregate:
    """One progress bar over every worker's progress file."""

    def __init__(self, folder: Path, enabled: bool):
        self.folder, self.enabled = folder, enabled
        self.done = self.total = self.tokens = 0
        self._p = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("[bold]generating (all workers)"), BarColumn(),
                               MofNCompleteColumn(), TextColumn("{task.fields[tps]:>7.1f} tok/s"),
                               TimeElapsedColumn())
            self._p.__enter__()
            self._task = self._p.add_task("gen", total=0, tps=0.0)
        return self

    def refresh(self) -> None:
        done = total = tokens = 0
        for f in self.folder.glob("worker-*.json"):
            try:
                d = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            done, total, tokens = done + d["done"], total + d["total"], tokens + d["tokens"]
        self.done, self.total, self.tokens = done, total, tokens
        if self._p is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self._p.update(self._task, completed=done, total=max(total, done), tps=tokens / dt)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
