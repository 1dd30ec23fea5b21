"""Import generations made elsewhere into the store, then grade and measure them.

    result = import_generations(Path("gens.jsonl"), "gsm8k", "my-model", [])
    result = import_generations(Path("samples_gsm8k_....jsonl"), "gsm8k", "m", [], fmt="lm-eval")

Every sample in the file is used. Problems may have different numbers of
samples n_i: every estimator (pass@k, maj@k, bon@k, ...) is computed per
problem from all n_i samples, and the k grid stops at the smallest n_i
(the unbiased estimators need n_i >= k, and a curve averaged over one fixed
set of problems at every k is what a scaling plot compares). What was used
(problems, samples, the n_i range, the k grid, anything left out and why)
is returned as notes for the CLI to print and recorded in the manifest
under "import". ``budget.n=N`` keeps each problem's first N samples
(equal n, e.g. to compare with a run of n=N); ``budget.ks=[...]`` picks the
k grid.

The imported samples get a model identity of their own ("imported:<name>"),
and a key from (task, problem id, sample index), so importing the same file
twice stores nothing new and a larger file adds only the new samples.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..config import ConfigError, compose, ks_for_budget
from ..config.schema import BudgetConfig
from ..dataset import Problem, load_problems, load_task
from ..engines.base import ModelIdentity
from ..store import ROW_VERSION, CallRecord, GenerationStore, sample_key
from ..store.schema import prompt_sha
from .import_formats import DEFAULT_ID_FIELD, DEFAULT_MATCH, ImportRow, read_generations
from .pipeline import RunResult, _write_run_files, evaluate
from .rundir import GenerationStats, RunDir

IMPORT_PARAMS = {"imported": True}
MATCHES = ("id", "text")


def _new_records(store: GenerationStore, fp: str, records: list[CallRecord], model: str,
                 path: Path) -> list[CallRecord]:
    """The records not stored yet; an already-stored one must hold the same text.

    Imported keys cannot cover the text (it is what is being stored), so a
    different file under the same --model would otherwise be ignored without
    a word while its scores were attached to the old texts.
    """
    stored = store.read(fp, keys={r.key for r in records}, columns=["text"]).to_pydict()
    old = dict(zip(stored["key"], stored["text"]))
    clash = [r for r in records if old.get(r.key, r.text) != r.text]
    if clash:
        r = clash[0]
        raise ConfigError(
            f"{path}: {len(clash)} generation(s) differ from the ones already imported as model "
            f"'{model}' (first: problem {r.problem_id}, sample {r.sample_index}); import them "
            f"under another --model name, nothing was changed"
        )
    return [r for r in records if r.key not in old]


def _budget_overrides(overrides: list[str]) -> tuple[int | None, list[int] | None, list[str]]:
    """budget.n (a cap per problem) and budget.ks, taken out of the overrides: an import sets both."""
    import yaml

    cap, ks, rest = None, None, []
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        try:
            if key == "budget.n":
                cap = int(value)
                if cap < 1:
                    raise ValueError
            elif key == "budget.ks":
                ks = sorted({int(k) for k in yaml.safe_load(value)})
                if not ks or ks[0] < 1:
                    raise ValueError
            else:
                rest.append(o)
        except (TypeError, ValueError, yaml.YAMLError):
            raise ConfigError(f"bad value '{value}' for {key}: expected a positive integer"
                              + (" list, e.g. budget.ks=[1,2,4]" if key == "budget.ks" else "")) from None
    return cap, ks, rest


def _norm(text: str) -> str:
    return " ".join(text.split())


def resolve_problems(rows: list[ImportRow], problems: list[Problem], match: str, *, what: str,
                     id_field: str) -> list[str]:
    """The problem id of every row: its ref is a problem id (match "id"), or text (match "text").

    Text: the ref (or, for a dict such as lm-eval's doc, any of its string
    values) equals a problem statement up to white space, or else contains
    one (a prompt that wraps the statement); when several are contained, the
    one ending last, then the longest (few-shot examples come before the
    question). Raises ConfigError naming the first row that matches nothing.
    """
    if match not in MATCHES:
        raise ConfigError(f"unknown --match '{match}'. Valid choices: {', '.join(MATCHES)}")
    if match == "id":
        ids = {p.id for p in problems}
        out = [str(r.ref) for r in rows]
        bad = [r for r, pid in zip(rows, out) if pid not in ids]
        if bad:
            unknown = sorted({str(r.ref) for r in bad})
            raise ConfigError(
                f"{len(unknown)} problem id(s) in {what} are not in the dataset: "
                f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} (read from '{id_field}'; "
                f"ids look like {next(iter(sorted(ids)), '?')}). Name another field with --id-field, "
                f"or match the problem statement with --match text")
        return out
    by_text: dict[str, str] = {}
    for p in problems:
        by_text.setdefault(_norm(p.problem), p.id)
    statements = sorted(by_text.items(), key=lambda kv: -len(kv[0]))
    memo: dict[str, str | None] = {}

    def one(ref) -> str | None:
        cands = [v for v in ref.values() if isinstance(v, str)] if isinstance(ref, dict) else [str(ref)]
        cands = [_norm(c) for c in cands]
        for c in cands:
            if c in by_text:
                return by_text[c]
        for c in cands:
            if c not in memo:
                found = [(c.rfind(s) + len(s), len(s), pid) for s, pid in statements if s and s in c]
                memo[c] = max(found)[2] if found else None
            if memo[c] is not None:
                return memo[c]
        return None

    out, missing = [], []
    for r in rows:
        pid = one(r.ref)
        if pid is None:
            missing.append(r)
        out.append(pid)
    if missing:
        r = missing[0]
        shown = json.dumps(r.ref, ensure_ascii=False, default=str)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ConfigError(
            f"{len(missing)} of {len(rows)} generations in {what} match no problem statement of the "
            f"dataset (first: {r.where}, '{id_field}' = {shown}); check --dataset and dataset.limit, "
            f"or name the field holding the problem with --id-field")
    return out


def _assign_indices(rows: list[ImportRow], pids: list[str]) -> list[tuple[str, int, ImportRow]]:
    """(problem id, sample index, row): explicit indices kept, the others the next free index."""
    next_index: Counter = Counter()
    seen: dict[tuple[str, int], str] = {}
    out = []
    for r, pid in zip(rows, pids):
        idx = r.sample_index if r.sample_index is not None else next_index[pid]
        next_index[pid] = max(next_index[pid], idx + 1)
        if (pid, idx) in seen:
            raise ConfigError(f"problem {pid} sample {idx} appears twice ({seen[(pid, idx)]} and {r.where}); "
                              f"give each generation its own sample_index, or none")
        seen[(pid, idx)] = r.where
        out.append((pid, idx, r))
    return out


def import_generations(path: Path, dataset: str, model: str, overrides: list[str], *,
                       fmt: str = "jsonl", id_field: str | None = None, match: str | None = None,
                       id_pattern: str | None = None) -> RunResult:
    """Store the file's generations as model ``imported:<model>``, then grade and measure them."""
    path = Path(path)
    cap, ks, rest = _budget_overrides(overrides)
    cfg = compose([f"dataset={dataset}", "engine=scripted", f"model.name={model}", *rest])
    task = load_task(cfg.dataset.name)
    problems = load_problems(cfg.dataset)
    read = read_generations(path, fmt, id_field=id_field, id_pattern=id_pattern,
                            known_ids={p.id for p in problems})
    field = id_field or DEFAULT_ID_FIELD[fmt]
    match = match or DEFAULT_MATCH[fmt]
    selected = " (as selected by dataset.limit/dataset.ids)" if cfg.dataset.limit or cfg.dataset.ids else ""
    pids = resolve_problems(read.rows, problems, match, what=f"{path}{selected}", id_field=field)
    samples = _assign_indices(read.rows, pids)

    per_problem: dict[str, list[int]] = {}
    for pid, idx, _ in samples:
        per_problem.setdefault(pid, []).append(idx)
    used_idx = {pid: set(sorted(ix)[:cap] if cap else ix) for pid, ix in per_problem.items()}
    n_of = {pid: len(ix) for pid, ix in used_idx.items()}
    n_min, n_max = min(n_of.values()), max(n_of.values())
    smallest = min(sorted(n_of), key=lambda pid: n_of[pid])
    if ks and ks[-1] > n_min:
        raise ConfigError(f"budget.ks has k={ks[-1]} but problem {smallest} has only {n_min} sample(s) "
                          f"to use; every k needs n_i >= k for every problem: drop that k")
    grid = ks or ks_for_budget(BudgetConfig(n=n_min))
    n_tag = f"n{n_min}" if n_min == n_max else f"n{n_min}-{n_max}"
    cfg = replace(cfg, budget=replace(cfg.budget, n=n_min, ks=ks),
                  run_name=f"{dataset}__{model}__imported-{n_tag}")

    identity = ModelIdentity(f"imported:{model}", f"imported:{model}", "import", "1")
    fp = identity.fingerprint
    records, jobs, scores = [], [], []
    for pid, idx, r in samples:
        prompt = f"{task.name}:{pid}"
        key = sample_key(fp, prompt, IMPORT_PARAMS, 0, None, idx)
        if idx in used_idx[pid]:
            jobs.append((pid, idx, key))
        if r.verifier_score is not None or r.step_scores is not None:
            scores.append({"key": key, "verifier_score": r.verifier_score, "step_scores": r.step_scores})
        records.append(CallRecord(
            key=key, schema_version=ROW_VERSION, model_fp=fp, model_id=identity.model_id,
            weights_hash=identity.weights_hash, engine=identity.engine,
            engine_version=identity.engine_version, dataset=task.name, problem_id=pid,
            prompt_sha=prompt_sha(prompt), sample_index=idx, base_seed=0, seed=None,
            params_json=json.dumps(IMPORT_PARAMS), temperature=None, max_tokens=None, text=r.text,
            prompt_tokens=r.prompt_tokens or 0,
            # Unknown counts are 0, never words passed off as tokens (see the note below).
            completion_tokens=r.completion_tokens or 0, finish_reason=str(r.finish_reason or "stop"),
            mean_logprob=r.mean_logprob, token_logprobs=None, latency_s=None, created_at=time.time()))
    store = GenerationStore(cfg.store_dir)
    new = _new_records(store, fp, records, model, path)
    store.write_shard(fp, new)
    import pandas as pd

    plan = pd.DataFrame(jobs, columns=["problem_id", "sample_index", "key"])
    run_dir = Path(cfg.runs_dir) / cfg.run_name
    used_pids = [p.id for p in problems if p.id in n_of]
    _write_run_files(run_dir, cfg, plan, [p for p in problems if p.id in n_of], task, identity)
    if scores:
        pd.DataFrame(scores).to_parquet(run_dir / "scores.parquet", index=False)
    else:  # scores from an earlier import of other generations must not linger
        (run_dir / "scores.parquet").unlink(missing_ok=True)

    notes = _usage_notes(path, fmt, field, match, len(samples), len(jobs), n_of, cap, grid, smallest,
                         len(problems) - len(used_pids), dataset) + read.notes
    RunDir(run_dir).update({"import": {
        "file": str(path), "format": fmt, "id_field": field, "match": match, "id_pattern": id_pattern,
        "samples_in_file": len(samples), "samples_used": len(jobs), "problems": len(used_pids),
        "n_min": n_min, "n_max": n_max, "ks": grid, "notes": notes}})
    gen = GenerationStats(planned=len(records), generated=len(new))
    note = store.repair_note()
    if note:
        gen.errors.append(f"{path}: {note}")
    if any(r.completion_tokens is None for _, _, r in samples):
        gen.errors.append(f"{path}: some generations have no completion token count; they count 0 "
                          f"tokens, so token and FLOPs costs of this run are too low")
    result = evaluate(run_dir, gen=gen)
    result.notes = notes
    return result


def _usage_notes(path, fmt, field, match, in_file, used, n_of, cap, grid, smallest, absent,
                 dataset) -> list[str]:
    """What the import used, for the user: nothing is left out without a line saying so."""
    n_min, n_max = min(n_of.values()), max(n_of.values())
    lines = [f"read {in_file} samples of {len(n_of)} problems from {path} (--format {fmt}; problems "
             f"matched by {match} of '{field}')"]
    if cap and used < in_file:
        lines.append(f"budget.n={cap}: each problem's first {cap} samples by sample index are used; "
                     f"{in_file - used} more are stored but not used")
    spread = f"n = {n_min} per problem" if n_min == n_max else (
        f"n per problem {n_min} to {n_max} (mean {used / len(n_of):.2f})")
    lines.append(f"using {used} samples: {spread}; k grid {', '.join(map(str, grid))}")
    if n_min != n_max:
        lines.append(f"k stops at the smallest n ({n_min}, problem {smallest}); at every k each problem's "
                     f"estimate uses all its n_i samples (unbiased for n_i >= k)")
    if absent:
        lines.append(f"{absent} of the selected {dataset} problems have no samples in the file and are "
                     f"not in this run")
    return lines
