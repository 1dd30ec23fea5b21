"""One experiment end to end: plan -> generate -> collect -> grade -> metrics -> report.

    result = run_experiment(compose(["dataset=gsm8k"]))   # generates what is missing
    result = regrade(Path("results/runs/<name>"))        # no engine, no generation

A run directory holds what the stages after generation need (the planned
keys, the problems' reference answers, the config), so grading and metrics
can be redone from the store alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import ConfigError, RunConfig, to_yaml
from ..dataset import Problem, load_problems, load_task
from ..engines import make_engine
from ..plan import Plan, make_plan, shard_jobs
from ..store import GenerationStore
from .generate import GenerationStats, generate_missing

# Columns of the store a graded-sample table needs (text for extraction).
SAMPLE_COLUMNS = ["key", "text", "prompt_tokens", "completion_tokens", "finish_reason",
                  "temperature", "mean_logprob", "seed", "latency_s"]


@dataclass
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame | None
    gen: GenerationStats
    timings: dict = field(default_factory=dict)
    complete: bool = True
    missing: int = 0
    grade_stats: dict = field(default_factory=dict)


def run_name(cfg: RunConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    # Everything that changes the samples or the metrics is in the hash.
    ident = json.dumps(
        {
            "model": dataclasses.asdict(cfg.model),
            "dataset": dataclasses.asdict(cfg.dataset),
            "strategy": dataclasses.asdict(cfg.strategy),
            "budget": dataclasses.asdict(cfg.budget),
            # The same model name through another engine is another model
            # identity (other weights hash): it must not share a run folder.
            "engine": cfg.engine.name,
        },
        sort_keys=True,
    )
    h = hashlib.sha256(ident.encode()).hexdigest()[:8]
    return f"{cfg.dataset.name}__{cfg.model.name}__{cfg.strategy.name}-n{cfg.budget.n}__{h}"


def run_experiment(cfg: RunConfig, *, progress: bool = True, console=None) -> RunResult:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    task = load_task(cfg.dataset.name)
    problems = load_problems(cfg.dataset, cfg.model.system_prompt)
    timings["load_problems_s"] = time.perf_counter() - t

    t = time.perf_counter()
    engine = make_engine(cfg.engine, cfg.model)
    timings["engine_init_s"] = time.perf_counter() - t
    store = GenerationStore(cfg.store_dir)
    run_dir = Path(cfg.runs_dir) / run_name(cfg)
    try:
        t = time.perf_counter()
        plan = make_plan(cfg, problems, engine)
        missing = plan.missing(store.existing_keys(plan.model_fp))
        todo = shard_jobs(missing, cfg.shard.index, cfg.shard.count)
        timings["plan_s"] = time.perf_counter() - t
        _write_run_files(run_dir, cfg, plan, problems, task, engine.identity())
        if console is not None:
            reused = len(plan.jobs) - len(missing)
            console.print(
                f"[bold]{len(plan.jobs)}[/] samples planned "
                f"({len(problems)} problems x n={cfg.budget.n}); {reused} already stored; "
                f"{len(todo)} to generate"
                + (f" (shard {cfg.shard.index}/{cfg.shard.count})" if cfg.shard.count > 1 else "")
            )
        gen = generate_missing(plan, todo, engine, store, batch_size=cfg.engine.batch_size,
                               dataset=cfg.dataset.name, progress=progress)
        timings["generate_s"] = gen.seconds
    finally:
        engine.close()
    if store.quarantined and console is not None:
        console.print(f"[yellow]{len(store.quarantined)} damaged shard(s) quarantined; "
                      "their samples were regenerated or will be on the next run[/]")
    result = RunResult(run_dir, None, gen, timings)
    if gen.interrupted:
        result.complete = False
        _update_manifest(run_dir, {"generation": dataclasses.asdict(gen), "timings": timings})
        return result
    evaluated = evaluate(run_dir, cfg=cfg, timings=timings, gen=gen, console=console)
    return evaluated


# -- run directory ----------------------------------------------------------


def _write_run_files(run_dir: Path, cfg: RunConfig, plan: Plan, problems: list[Problem],
                     task, identity) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    jobs = pd.DataFrame(
        {
            "problem_id": [j.problem_id for j in plan.jobs],
            "sample_index": [j.sample_index for j in plan.jobs],
            "key": [j.key for j in plan.jobs],
        }
    )
    _write_parquet(run_dir / "plan.parquet", jobs)
    _write_parquet(run_dir / "problems.parquet", pd.DataFrame(
        {
            "problem_id": [p.id for p in problems],
            "answer": [p.answer for p in problems],
            "level": [p.meta.get("level") for p in problems],
        }
    ).astype({"level": "object"}))
    _update_manifest(
        run_dir,
        {
            "run_name": run_dir.name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            "task": {"name": task.name, "extractor": task.extractor, "grader": task.grader},
            "model": dataclasses.asdict(identity) | {"fingerprint": identity.fingerprint},
            "store_dir": str(Path(cfg.store_dir).resolve()),
            "versions": _versions(identity),
            "git_commit": _git_commit(),
            "model_shape": _model_shape(cfg, identity),
        },
    )


def _model_shape(cfg: RunConfig, identity) -> dict | None:
    """Parameters, layers, heads... read from the model's own config or GGUF, for FLOPs.

    None for fakes and imports (their weights are not here) or when the
    shape cannot be read (a hub id not in the local cache).
    """
    if identity.engine in ("scripted", "import"):
        return None
    from ..metrics.model_shape import ModelShapeError, shape_for_model

    try:
        return dataclasses.asdict(shape_for_model(cfg.model.path, cfg.model.revision))
    except (ModelShapeError, ConfigError, OSError):
        return None


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Atomically: another shard process may be reading the run directory."""
    import io

    from ..store import atomic_write_bytes

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _update_manifest(run_dir: Path, fields: dict) -> None:
    from ..store import atomic_write_bytes

    path = run_dir / "manifest.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(fields)
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode())


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory (no manifest.json); "
            f"runs live under results/runs/ — see `tts-bench cache`"
        )
    return json.loads(path.read_text())


def _versions(identity) -> dict:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "engine": identity.engine_version}
    for pkg in ("tts-bench", "numpy", "pandas", "pyarrow", "hydra-core", "math-verify",
                "llama-cpp-python", "vllm", "datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


# -- collect, grade, measure, report -----------------------------------------


def collect_samples(run_dir: Path, store: GenerationStore, model_fp: str) -> tuple[pd.DataFrame, int]:
    """The run's planned samples joined with the store; returns (samples, missing)."""
    plan = pd.read_parquet(run_dir / "plan.parquet")
    table = store.read(model_fp, keys=set(plan["key"]), columns=SAMPLE_COLUMNS)
    stored = table.to_pandas()
    samples = plan.merge(stored, on="key", how="inner")
    missing = len(plan) - len(samples)
    return samples.sort_values(["problem_id", "sample_index"], kind="stable").reset_index(drop=True), missing


SCORE_COLUMNS = ["verifier_score", "step_scores"]


def attach_scores(run_dir: Path, samples: pd.DataFrame) -> pd.DataFrame:
    """Join verifier output (``scores.parquet``: key, verifier_score, step_scores) if present.

    Verifier scores are a stage after generation, like grades: they live
    beside the run, keyed by the sample key, and never change a stored sample.
    """
    path = Path(run_dir) / "scores.parquet"
    if not path.is_file():
        return samples
    scores = pd.read_parquet(path)
    cols = ["key"] + [c for c in SCORE_COLUMNS if c in scores.columns]
    return samples.merge(scores[cols].drop_duplicates("key"), on="key", how="left")


def evaluate(run_dir: Path, *, cfg: RunConfig | None = None, timings: dict | None = None,
             gen: GenerationStats | None = None, console=None) -> RunResult:
    """Grade the run's stored samples and compute metrics and report files."""
    from ..grading import grade_samples

    manifest = read_manifest(run_dir)
    timings = dict(timings or {})
    gen = gen or GenerationStats()
    cfg_d = manifest["config"]
    store = GenerationStore(manifest["store_dir"])
    t = time.perf_counter()
    samples, missing = collect_samples(run_dir, store, manifest["model"]["fingerprint"])
    samples = attach_scores(run_dir, samples)
    timings["collect_s"] = time.perf_counter() - t
    result = RunResult(run_dir, None, gen, timings, missing=missing)
    if missing:
        result.complete = False
        _update_manifest(run_dir, {"missing_samples": missing, "timings": timings,
                                   "generation": dataclasses.asdict(gen)})
        return result
    problems = pd.read_parquet(run_dir / "problems.parquet")
    gold = dict(zip(problems["problem_id"], problems["answer"]))
    t = time.perf_counter()
    graded, gstats = grade_samples(
        samples,
        gold,
        extractor=manifest["task"]["extractor"],
        grader=manifest["task"]["grader"],
        cache_dir=Path(manifest["store_dir"]) / "grades",
        workers=int(cfg_d.get("grade_workers", 2)),
        timeout_s=float(cfg_d.get("grade_timeout_s", 10.0)),
        # A timeout depends on the machine's load at the time: retry cached
        # timeouts and errors rather than let them mark an answer wrong forever.
        retry_failed=True,
    )
    timings["grade_s"] = time.perf_counter() - t
    result.grade_stats = dataclasses.asdict(gstats) if dataclasses.is_dataclass(gstats) else dict(gstats)
    _update_manifest(run_dir, {"timings": timings, "generation": dataclasses.asdict(gen),
                               "grading": result.grade_stats, "missing_samples": 0})
    result.metrics = measure_and_report(run_dir, graded, timings=timings)
    return result


def measure_and_report(run_dir: Path, graded: pd.DataFrame, *, timings: dict | None = None,
                       n_boot: int | None = None, plot: bool | None = None) -> pd.DataFrame:
    """Graded samples -> every metric and analysis -> run-directory files and report.html.

    Used by a run, by `tts-bench grade` and by `tts-bench report`, so the
    three always write the same files. Returns the curves (metrics.csv).
    """
    from ..metrics import reduce_per_problem
    from ..metrics.analyze import analyze_run
    from ..report import write_report
    from ..report.analysis import write_analysis

    manifest = read_manifest(run_dir)
    cfg_d = manifest["config"]
    timings = timings if timings is not None else {}
    plot = bool(cfg_d.get("plot", True)) if plot is None else plot
    t = time.perf_counter()
    per_problem = reduce_per_problem(graded)
    analysis = analyze_run(graded, per_problem, cfg_ks(cfg_d), model_shape=manifest.get("model_shape"),
                           n_boot=int(n_boot if n_boot is not None else cfg_d.get("bootstrap", 1000)),
                           seed=0)
    timings["metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    write_report(run_dir, graded, per_problem, analysis.curves, plot=plot)
    tables, figures = write_analysis(run_dir, analysis, draw=plot)
    timings["report_s"] = time.perf_counter() - t
    _update_manifest(
        run_dir,
        {
            "timings": timings,
            "analysis_notes": analysis.notes,
            "totals": {
                "problems": int(per_problem.shape[0]),
                "samples": int(graded.shape[0]),
                "prompt_tokens": int(graded["prompt_tokens"].sum()),
                "completion_tokens": int(graded["completion_tokens"].sum()),
                "truncated": int((graded["finish_reason"] == "length").sum()),
            },
        },
    )
    if plot:
        from ..report.html import render_run_report

        t = time.perf_counter()
        render_run_report(run_dir, extra_tables=tables, extra_figures=figures)
        timings["html_s"] = time.perf_counter() - t
        _update_manifest(run_dir, {"timings": timings})
    return analysis.curves


def cfg_ks(cfg_d: dict) -> list[int]:
    """The k grid of a run from its manifest's config."""
    from ..config import ks_for_budget
    from ..config.schema import BudgetConfig

    b = cfg_d["budget"]
    return ks_for_budget(BudgetConfig(n=int(b["n"]), ks=b.get("ks")))
