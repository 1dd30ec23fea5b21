"""One experiment end to end: problems -> strategy on the call layer -> grade -> metrics -> report.

    result = run_experiment(compose(["dataset=gsm8k"]))   # generates what is missing
    result = regrade(Path("results/runs/<name>"))        # no engine, no generation

The runner orchestrates: it loads the problems, runs the configured strategy
(``tts_bench.strategies``) over the cached call layer (``tts_bench.calls``),
writes the strategy's trajectories to the run directory (``rundir.py``), then
grades, measures and reports. A run directory holds what the stages after
generation need, so grading and metrics can be redone from it and the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..calls import CallLayer
from ..config import ConfigError, RunConfig, to_yaml
from ..dataset import Problem, load_problems, load_task
from ..engines import make_engine
from ..store import GenerationStore
from ..strategies import AnswerReader, StrategyProblem, make_strategy
from .rundir import GenerationStats, RunDir, write_parquet

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
    notes: list[str] = field(default_factory=list)  # what an import used, for the CLI to print


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


def worker_overrides(overrides: list[str]) -> list[str]:
    """The user's overrides without shard or launcher settings: a worker gets its own shard."""
    return [o for o in overrides if not o.lstrip("+~").startswith(("shard.", "launcher"))]


def shard_of(text: str, count: int) -> int:
    """Deterministic split by a sha256-hex prefix: every process computes the same partition."""
    return int(text[:8], 16) % count


def run_experiment(cfg: RunConfig, *, progress: bool = True, console=None,
                   evaluate_after: bool = True) -> RunResult:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    task = load_task(cfg.dataset.name)
    problems = load_problems(cfg.dataset, cfg.model.system_prompt)
    timings["load_problems_s"] = time.perf_counter() - t

    strat = make_strategy(cfg, AnswerReader(task.extractor))  # before the engine loads: its checks first
    # The strategy sees problems without their reference answers.
    views = [StrategyProblem(p.id, p.messages) for p in problems]
    count, index = cfg.shard.count, cfg.shard.index
    in_shard = None
    if count > 1 and strat.shard_by == "problem":
        views = [v for v in views if shard_of(hashlib.sha256(v.id.encode()).hexdigest(), count) == index]
    elif count > 1:
        def in_shard(key: str) -> bool:
            return shard_of(key, count) == index

    t = time.perf_counter()
    engine = make_engine(cfg.engine, cfg.model)
    timings["engine_init_s"] = time.perf_counter() - t
    scorer, verifier_engine = None, None
    if getattr(strat, "uses_verifier", False):  # a search asks the verifier while it generates
        scorer, verifier_engine = _search_scorer(cfg, engine)
        strat.scorer = scorer
    store = GenerationStore(cfg.store_dir)
    rd = RunDir(Path(cfg.runs_dir) / run_name(cfg))
    bar = _Progress(enabled=progress)
    gen = GenerationStats()
    t0 = time.perf_counter()
    trajectories = None
    try:
        t = time.perf_counter()
        layer = CallLayer(engine, store, base_seed=int(cfg.strategy.seed), dataset=cfg.dataset.name,
                          batch_size=cfg.engine.batch_size, progress=bar, in_shard=in_shard)
        plan = strat.calls(views) if strat.shard_by == "key" else None
        _write_run_files(rd.path, cfg, _plan_frame(plan, layer), problems, task, engine.identity())
        timings["plan_s"] = time.perf_counter() - t
        if console is not None:
            line = strat.describe(views, layer)
            if count > 1:
                line += f" (shard {index}/{count})"
            console.print(line)
        layers = [layer]
        try:
            with bar:
                trajectories = [tr.row() for tr in strat.run(views, layer)]
                if cfg.arise.repeats:
                    trajectories += _arise_repeats(cfg, task, problems, views, trajectories, engine,
                                                   store, bar, layers, console, scorer)
        except KeyboardInterrupt:
            gen.interrupted = True
            trajectories = None
        gen = dataclasses.replace(
            gen, planned=sum(la.stats.requested for la in layers),
            cached=sum(la.stats.cached for la in layers),
            generated=sum(la.stats.generated for la in layers),
            completion_tokens=sum(la.stats.completion_tokens for la in layers),
            prompt_tokens=sum(la.stats.prompt_tokens for la in layers),
            engine_seconds=sum(la.stats.engine_seconds for la in layers),
            shards_written=sum(la.stats.shards_written for la in layers),
            engine_calls=sum(la.stats.engine_calls for la in layers),
            errors=[e for la in layers for e in la.stats.errors])
    except BaseException:
        engine.close()
        raise
    finally:
        gen.seconds = time.perf_counter() - t0
        if scorer is not None:
            scorer.verifier.close()
        if verifier_engine is not None:
            verifier_engine.close()
    # A genrm verifier of the run's own model scores with this engine (loaded once).
    if gen.interrupted or not (evaluate_after and _verifier_reuses_engine(cfg)):
        engine.close()
        engine = None
    timings["generate_s"] = gen.seconds
    if trajectories is not None:
        rd.write_trajectories(trajectories, (index, count))
    note = store.repair_note()
    if note:
        gen.errors.append(note)
        if console is not None:
            console.print(f"[yellow]warning: {note}[/]", highlight=False)
    invocation = {"shard": [index, count], "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "generation": dataclasses.asdict(gen)}
    if scorer is not None:  # what the search asked its verifier (partial solutions)
        invocation["search_scoring"] = dataclasses.asdict(scorer.stats) | {
            "verifier_calls": int(getattr(scorer.verifier, "calls", scorer.stats.scored))}
    rd.add_invocation(invocation)
    if store.quarantined and console is not None:
        console.print(f"[yellow]{len(store.quarantined)} damaged shard(s) quarantined; "
                      "their samples were regenerated or will be on the next run[/]")
    result = RunResult(rd.path, None, gen, timings)
    if gen.interrupted:
        result.complete = False
        rd.update({"generation": dataclasses.asdict(gen), "timings": timings})
        return result
    if not evaluate_after:  # a launcher's worker: the launcher evaluates once
        return result
    try:
        return evaluate(rd.path, cfg=cfg, timings=timings, gen=gen, console=console, engine=engine,
                        progress=progress)
    finally:
        if engine is not None:
            engine.close()


def _search_scorer(cfg: RunConfig, engine):
    """The score layer a search strategy asks while it generates, and the engine it opened (or None)."""
    from ..store import ScoreStore
    from ..verifiers import ScoreLayer, make_verifier

    verifier, opened = make_verifier(cfg, engine=engine)
    return ScoreLayer(verifier, ScoreStore(cfg.store_dir), dataset=cfg.dataset.name), opened


def _verifier_reuses_engine(cfg: RunConfig) -> bool:
    return cfg.verifier.kind == "genrm" and not cfg.verifier.model_path


def _arise_repeats(cfg: RunConfig, task, problems, views, rows: list[dict], engine, store, bar,
                   layers: list, console, scorer=None) -> list[dict]:
    """Repeats 1.. of the strategy (base seed strategy.seed + r) until ARISE's rule settles."""
    from ..config import budget_ks
    from .arise import level_stats, settled_runs

    a = cfg.arise
    gold = {p.id: p.answer for p in problems}
    out: list[dict] = []
    for r in range(1, a.max_runs):
        if r >= a.min_runs:
            graded = _grade_rows(pd.DataFrame(rows + out), gold, task, cfg)
            settled = settled_runs(level_stats(graded, budget_ks(cfg)), min_runs=a.min_runs,
                                   max_runs=a.max_runs, threshold=a.threshold)
            need = set(settled.loc[settled["need_more"] & (settled["runs"] >= r), "problem_id"])
        else:
            need = {v.id for v in views}
        if not need:
            break
        seed = int(cfg.strategy.seed) + r
        cfg_r = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, seed=seed))
        strat_r = make_strategy(cfg_r, AnswerReader(task.extractor), scorer=scorer)
        layer = CallLayer(engine, store, base_seed=seed, dataset=cfg.dataset.name,
                          batch_size=cfg.engine.batch_size, progress=bar)
        layers.append(layer)
        if console is not None:
            console.print(f"ARISE repeat {r}: {len(need)} problem(s), base seed {seed}")
        out += [tr.row() | {"repeat": r} for tr in strat_r.run([v for v in views if v.id in need], layer)]
    return out


def _grade_rows(samples: pd.DataFrame, gold: dict, task, cfg: RunConfig) -> pd.DataFrame:
    from ..grading import grade_samples

    graded, _ = grade_samples(samples, gold, extractor=task.extractor, grader=task.grader,
                              cache_dir=Path(cfg.store_dir) / "grades", workers=int(cfg.grade_workers),
                              timeout_s=float(cfg.grade_timeout_s), retry_failed=True)
    return graded


def _plan_frame(calls, layer: CallLayer) -> pd.DataFrame | None:
    """The sample keys of a key-sharded strategy (parallel), known before anything runs."""
    if calls is None:
        return None
    rows = [(c.problem_id, i, k) for c in calls for i, _, k in layer.slots(c)]
    return pd.DataFrame(rows, columns=["problem_id", "sample_index", "key"])


# -- run directory ----------------------------------------------------------


def _write_run_files(run_dir: Path, cfg: RunConfig, plan: pd.DataFrame | None, problems: list[Problem],
                     task, identity) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    if plan is not None:
        write_parquet(run_dir / "plan.parquet", plan)
    write_parquet(run_dir / "problems.parquet", pd.DataFrame(
        {
            "problem_id": [p.id for p in problems],
            "answer": [p.answer for p in problems],
            "level": [p.meta.get("level") for p in problems],
        }
    ).astype({"level": "object"}))
    RunDir(run_dir).update(
        {
            "run_name": run_dir.name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            "strategy": cfg.strategy.name,
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
    from ..models import ModelShapeError, shape_for_model

    try:
        return dataclasses.asdict(shape_for_model(cfg.model.path, cfg.model.revision))
    except (ModelShapeError, ConfigError, OSError):
        return None


def _update_manifest(run_dir: Path, fields: dict) -> None:
    RunDir(run_dir).update(fields)


def read_manifest(run_dir: Path) -> dict:
    return RunDir(run_dir).read_manifest()


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


def collect_samples(run_dir: Path, store: GenerationStore, model_fp: str, *,
                    trajectories: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """The run's graded units (one row per trajectory) and how many are missing.

    A run with ``plan.parquet`` (a key-sharded strategy such as parallel, an
    import, or a run written before trajectories existed) is joined with the
    store by key, so shard processes' samples all count; otherwise the
    strategy's trajectories are read, and a problem with none is missing.
    Every row has ``level`` (budget, depth, or 0) and ``main`` (part of the
    main pass@k/maj@k analysis). ``trajectories``: the run directory's merged
    trajectories, when the caller has read them already.
    """
    samples, missing, _ = _collect(run_dir, store, model_fp, trajectories=trajectories, lazy_text=False)
    return samples, missing


def _collect(run_dir: Path, store: GenerationStore, model_fp: str, *, trajectories: pd.DataFrame | None,
             lazy_text: bool):
    """:func:`collect_samples`, and with ``lazy_text`` a plan's samples without ``text``.

    Returns (samples, missing, aligned): ``aligned`` (a ``store.Aligned``
    whose rows are the samples' rows, in order) when the texts were left in
    the store, to be read file by file for extraction and for
    samples.parquet; else None (the texts are in ``samples``).
    """
    rd = RunDir(run_dir)
    if trajectories is None:
        trajectories = rd.read_trajectories()
    plan_path = Path(run_dir) / "plan.parquet"
    if plan_path.is_file():
        import pyarrow.parquet as pq

        more = trajectories  # ARISE repeats of a key-sharded strategy
        repeats = more is not None and bool((more["repeat"] > 0).any())
        lazy = lazy_text and not repeats
        plan_t = pq.read_table(plan_path)
        cols = [c for c in SAMPLE_COLUMNS if not (lazy and c == "text")]
        aligned = store.read_aligned(model_fp, plan_t.column("key"), columns=cols)
        stored, found = aligned.table, aligned.found
        # Plan rows and their stored rows side by side (no join on 5M keys).
        samples = plan_t.filter(found).to_pandas() if not found.all() else plan_t.to_pandas()
        for col in stored.column_names:
            if col not in samples.columns:
                samples[col] = stored.column(col).to_pandas()
        missing = len(plan_t) - len(samples)
        aligned = aligned.locations()
        del stored, plan_t
        _release_memory()
        samples["level"] = 0
        samples["main"] = True
        samples["trajectory"] = samples["sample_index"]
        samples["repeat"] = 0
        samples, perm = _by_problem(samples)
        if perm is not None:
            aligned = aligned.permuted(perm)
        if repeats:
            more = more[more["repeat"] > 0].copy()
            more["temperature"] = samples["temperature"].iloc[0] if len(samples) else float("nan")
            samples = pd.concat([samples, more[[c for c in more.columns if c in samples.columns]]],
                                ignore_index=True)
        return samples.reset_index(drop=True), missing, aligned if lazy else None
    traj = None if trajectories is None else trajectories.copy()
    problems = pd.read_parquet(Path(run_dir) / "problems.parquet")
    if traj is None:
        empty = pd.DataFrame(columns=["problem_id", "sample_index", "key", "level", "main"])
        return empty, len(problems), None
    missing = int((~problems["problem_id"].isin(set(traj["problem_id"]))).sum())
    traj["temperature"] = float(rd.manifest().config["strategy"].get("temperature", float("nan")))
    traj = traj.sort_values(["level", "problem_id", "trajectory"], kind="stable").reset_index(drop=True)
    return traj, missing, None


def _release_memory() -> None:
    """Hand Arrow's freed pages back to the system (its allocator keeps them: +1 GiB at 5M samples)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _by_problem(samples: pd.DataFrame) -> tuple[pd.DataFrame, object]:
    """Samples in (problem_id, sample_index) order (stable), and the permutation (None: already were)."""
    import numpy as np

    codes, _ = pd.factorize(samples["problem_id"], sort=True)
    index = samples["sample_index"].to_numpy()
    dp, di = np.diff(codes), np.diff(index)
    if ((dp > 0) | ((dp == 0) & (di >= 0))).all():
        return samples, None
    perm = np.lexsort((index, codes))
    return samples.iloc[perm], perm


SCORE_COLUMNS = ["verifier_score", "step_scores", "verifier_input_tokens", "verifier_output_tokens",
                 "verifications"]


def attach_scores(run_dir: Path, samples: pd.DataFrame, console=None) -> pd.DataFrame:
    """Join verifier output (``scores.parquet``: key, verifier_score, step_scores...) if present.

    Verifier scores are a stage after generation, like grades: they live
    beside the run, keyed by the sample key, and never change a stored sample.
    Scores that cover only some samples (a top-up after scoring) are left
    out, with a message, rather than rank unscored samples last.
    """
    path = Path(run_dir) / "scores.parquet"
    if not path.is_file():
        return samples
    scores = pd.read_parquet(path)
    cols = ["key"] + [c for c in SCORE_COLUMNS if c in scores.columns]
    covered = samples["key"].isin(set(scores["key"]))
    if not covered.all():
        if console is not None:
            console.print(f"[yellow]verifier scores cover {int(covered.sum())} of {len(samples)} samples; "
                          f"bon@k and weighted@k left out. Score them: tts-bench score {run_dir} "
                          f"verifier=<name>[/]")
        return samples
    return samples.merge(scores[cols].drop_duplicates("key"), on="key", how="left")


def evaluate(run_dir: Path, *, cfg: RunConfig | None = None, timings: dict | None = None,
             gen: GenerationStats | None = None, console=None, engine=None,
             progress: bool = False) -> RunResult:
    """Score (when ``cfg`` has a verifier), grade the run's stored samples, compute metrics and reports.

    ``engine``: the run's loaded engine, for a genrm verifier of the same model.
    """
    from ..grading import grade_samples
    from ..grading.grade import extract_stored

    manifest = RunDir(run_dir).manifest()
    timings = dict(timings or {})
    gen = gen or GenerationStats()
    cfg_d = manifest.config
    store = GenerationStore(manifest.store_dir)
    t = time.perf_counter()
    traj = RunDir(run_dir).read_trajectories()
    if traj is not None:  # every shard's trajectories in one file, for readers
        write_parquet(Path(run_dir) / "trajectories.parquet", traj)
    # A plan's texts stay in the store: extraction and samples.parquet read them file by file.
    samples, missing, texts = _collect(run_dir, store, manifest.model_fingerprint, trajectories=traj,
                                       lazy_text=True)
    timings["collect_s"] = time.perf_counter() - t
    if not missing and cfg is not None and cfg.verifier.kind != "none":
        from .scoring import score_run

        t = time.perf_counter()
        scored = score_run(run_dir, cfg, engine=engine, progress=progress, console=console)
        timings["score_s"] = time.perf_counter() - t
        if console is not None:
            st = scored.stats
            console.print(f"scored {st.scored} samples with {cfg.verifier.name} ({st.cached} from the store)")
    samples = attach_scores(run_dir, samples, console=console)
    result = RunResult(run_dir, None, gen, timings, missing=missing)
    if missing:
        result.complete = False
        _update_manifest(run_dir, {"missing_samples": missing, "timings": timings,
                                   "generation": dataclasses.asdict(gen)})
        return result
    problems = pd.read_parquet(run_dir / "problems.parquet")
    gold = dict(zip(problems["problem_id"], problems["answer"]))
    t = time.perf_counter()
    workers = int(cfg_d.get("grade_workers", 2))
    graded, gstats = grade_samples(
        samples,
        gold,
        extractor=manifest.extractor,
        grader=manifest.grader,
        cache_dir=Path(manifest.store_dir) / "grades",
        workers=workers,
        answers=None if texts is None else extract_stored(texts, manifest.extractor, workers=workers),
        timeout_s=float(cfg_d.get("grade_timeout_s", 10.0)),
        # A timeout depends on the machine's load at the time: retry cached
        # timeouts and errors rather than let them mark an answer wrong forever.
        retry_failed=True,
    )
    timings["grade_s"] = time.perf_counter() - t
    del samples
    _release_memory()
    result.grade_stats = dataclasses.asdict(gstats) if dataclasses.is_dataclass(gstats) else dict(gstats)
    _update_manifest(run_dir, {"timings": timings, "generation": dataclasses.asdict(gen),
                               "grading": result.grade_stats, "missing_samples": 0})
    result.metrics = measure_and_report(run_dir, graded, timings=timings, texts=texts)
    return result


class _Progress:
    """Rich progress bar: samples, tokens/s, ETA; the total grows as a strategy plans rounds."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self.tokens = 0
        self.t0 = time.perf_counter()
        self._p = None
        # A launcher's worker reports here for the launcher's aggregated bar.
        self._file = os.environ.get("TTS_BENCH_PROGRESS_FILE")
        self._written = 0.0

    def _report(self, force: bool = False) -> None:
        if not self._file or (not force and time.perf_counter() - self._written < 0.5):
            return
        from ..store import atomic_write_bytes

        self._written = time.perf_counter()
        atomic_write_bytes(Path(self._file), json.dumps(
            {"done": self.done, "total": self.total, "tokens": self.tokens}).encode())

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("samples"),
                TextColumn("{task.fields[tps]:>7.1f} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._p.__enter__()
            self._task = self._p.add_task("gen", total=0, tps=0.0)
        return self

    def add_total(self, samples: int) -> None:
        self.total += samples
        self._report()
        if self._p is not None:
            self._p.update(self._task, total=self.total)

    def advance(self, samples: int, tokens: int) -> None:
        self.tokens += tokens
        self.done += samples
        self._report()
        if self._p is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self._p.update(self._task, advance=samples, tps=self.tokens / dt)

    def __exit__(self, *exc):
        self._report(force=True)
        if self._p is not None:
            self._p.__exit__(*exc)
            self._p = None
        return False


def measure_and_report(run_dir: Path, graded: pd.DataFrame, *, timings: dict | None = None,
                       n_boot: int | None = None, plot: bool | None = None, texts=None,
                       samples_written: bool = False) -> pd.DataFrame:
    """Graded samples -> every metric and analysis -> run-directory files and report.html.

    Used by a run, by `tts-bench grade` and by `tts-bench report`, so the
    three always write the same files. Returns the curves (metrics.csv).
    ``texts``: where ``graded``'s texts are stored (a ``store.Aligned`` over
    its rows), when ``graded`` has none; samples.parquet gets them file by file.
    ``samples_written``: ``graded`` is samples.parquet as it stands (`tts-bench
    report`), so it is not written again.
    """
    from ..metrics import reduce_per_problem
    from ..metrics.analyze import analyze_run
    from ..report import write_report
    from ..report.analysis import write_analysis

    manifest = RunDir(run_dir).manifest()
    cfg_d = manifest.config
    timings = timings if timings is not None else {}
    plot = bool(cfg_d.get("plot", True)) if plot is None else plot
    boot = int(n_boot if n_boot is not None else cfg_d.get("bootstrap", 1000))
    t = time.perf_counter()
    # The main pool (parallel's samples, the largest budget, the final depth,
    # adaptive's fixed-n comparison) gets every pass@k/maj@k analysis; every
    # level gets the strategy's own tables.
    repeats, every = None, graded
    if "repeat" in graded.columns and (graded["repeat"] > 0).any():
        repeats, graded = graded, graded[graded["repeat"] == 0].reset_index(drop=True)
    main = graded
    if "main" in graded.columns and not graded["main"].all():  # no copy of every text when all are
        main = graded[graded["main"].astype(bool)]
    if main.empty:  # e.g. adaptive without its fixed-n pool: the strategy's own rows
        main = graded
    per_problem = reduce_per_problem(main)
    n_min = int(main.groupby("problem_id").size().min()) if len(main) else 1
    ks = [k for k in cfg_ks(cfg_d) if k <= n_min] or [n_min]
    vshape = (manifest.extra.get("verifier") or {}).get("model_shape") if "verifier_score" in main else None
    analysis = analyze_run(main, per_problem, ks, model_shape=manifest.model_shape,
                           n_boot=boot, seed=0, verifier_shape=vshape)
    from ..metrics.strategies import TITLES as STRATEGY_TITLES
    from ..metrics.strategies import strategy_tables
    from ..metrics.verification import solve_vs_verify

    own = strategy_tables(manifest.strategy, graded, cfg_d, n_boot=boot, model_shape=manifest.model_shape,
                          verifier_shape=vshape)
    solve_verify = solve_vs_verify(main, n_boot=boot)
    if not solve_verify.empty:
        own["solve_vs_verify"] = solve_verify
    if repeats is not None:
        from .arise import arise_summary, level_stats, settled_runs

        a = cfg_d.get("arise", {})
        settled = settled_runs(level_stats(repeats, cfg_ks(cfg_d)), min_runs=int(a.get("min_runs", 3)),
                               max_runs=int(a.get("max_runs", 10)),
                               threshold=float(a.get("threshold", 0.5)))
        own["arise_repeats"] = settled
        own["arise_adaptive"] = arise_summary(settled)
    timings["metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    write_report(run_dir, every, per_problem, analysis.curves, plot=plot, texts=texts,  # every repeat kept
                 samples=not samples_written)
    tables, figures = write_analysis(run_dir, analysis, draw=plot)
    from ..store import atomic_write_bytes

    for name, table in own.items():
        atomic_write_bytes(Path(run_dir) / "analysis" / f"{name}.csv", table.to_csv(index=False).encode())
    tables = {**{STRATEGY_TITLES[name]: t for name, t in own.items()}, **tables}
    if plot and "levels" in own:
        from ..report.figures import levels_figure

        thinking = own["levels"].get("mean_thinking_tokens")
        x_col = "mean_thinking_tokens" if thinking is not None and thinking.gt(0).any() \
            else "mean_completion_tokens"
        fig = levels_figure(own["levels"], Path(run_dir) / "plots" / "levels", x_col=x_col,
                            x_label=x_col.replace("mean_", "mean ").replace("_", " ") + " per trajectory",
                            title="Accuracy per level against tokens")
        figures = [fig, *figures] if fig is not None else figures
    if plot and "solve_vs_verify" in own:
        from ..report.figures import solve_verify_figure

        fig = solve_verify_figure(own["solve_vs_verify"], Path(run_dir) / "plots" / "solve_vs_verify")
        figures = [*figures, fig] if fig is not None else figures
    timings["report_s"] = time.perf_counter() - t
    _update_manifest(
        run_dir,
        {
            "timings": timings,
            "analysis_notes": analysis.notes,
            "totals": {
                "problems": int(per_problem.shape[0]),
                "samples": int(main.shape[0]),
                "prompt_tokens": int(main["prompt_tokens"].sum()),
                "completion_tokens": int(main["completion_tokens"].sum()),
                "truncated": int((main["finish_reason"] == "length").sum()),
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
