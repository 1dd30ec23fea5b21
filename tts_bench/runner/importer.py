"""Import generations made elsewhere into the store, then grade and measure them.

    result = import_generations(Path("gens.jsonl"), "gsm8k", "my-model", [])

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

from ..config import ConfigError, compose
from ..dataset import load_problems, load_task
from ..engines.base import ModelIdentity
from ..store import ROW_VERSION, GenerationStore, sample_key
from ..store.schema import prompt_sha
from .pipeline import RunResult, _write_run_files, evaluate
from .rundir import GenerationStats

IMPORT_PARAMS = {"imported": True}


def _new_records(store: GenerationStore, fp: str, records: list[dict], model: str,
                 path: Path) -> list[dict]:
    """The records not stored yet; an already-stored one must hold the same text.

    Imported keys cannot cover the text (it is what is being stored), so a
    different file under the same --model would otherwise be ignored without
    a word while its scores were attached to the old texts.
    """
    stored = store.read(fp, keys={r["key"] for r in records}, columns=["text"]).to_pydict()
    old = dict(zip(stored["key"], stored["text"]))
    clash = [r for r in records if old.get(r["key"], r["text"]) != r["text"]]
    if clash:
        r = clash[0]
        raise ConfigError(
            f"{path}: {len(clash)} generation(s) differ from the ones already imported as model "
            f"'{model}' (first: problem {r['problem_id']}, sample {r['sample_index']}); import them "
            f"under another --model name, nothing was changed"
        )
    return [r for r in records if r["key"] not in old]


def _opt_float(v) -> float | None:
    return None if v is None else float(v)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give a JSONL file of generations")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or "problem_id" not in row or "text" not in row:
            raise ConfigError(f"{path}:{lineno}: each line needs \"problem_id\" and \"text\"")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no generations")
    return rows


def import_generations(path: Path, dataset: str, model: str, overrides: list[str]) -> RunResult:
    rows = _read_rows(Path(path))
    cfg = compose([f"dataset={dataset}", "engine=scripted", f"model.name={model}", *overrides])
    task = load_task(cfg.dataset.name)
    problems = load_problems(cfg.dataset)
    by_id = {p.id: p for p in problems}
    unknown = sorted({str(r["problem_id"]) for r in rows} - set(by_id))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} problem id(s) in {path} are not in {dataset}: "
            f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}"
        )
    counts = Counter(str(r["problem_id"]) for r in rows)
    n = min(counts.values())
    used_pids = [p.id for p in problems if p.id in counts]
    cfg = replace(cfg, budget=replace(cfg.budget, n=n, ks=None),
                  run_name=f"{dataset}__{model}__imported-n{n}")
    identity = ModelIdentity(f"imported:{model}", f"imported:{model}", "import", "1")
    fp = identity.fingerprint
    next_index: Counter = Counter()
    records, jobs, scores = [], [], []
    for r in rows:
        pid = str(r["problem_id"])
        idx = int(r["sample_index"]) if "sample_index" in r else next_index[pid]
        next_index[pid] = max(next_index[pid], idx + 1)
        prompt = f"{task.name}:{pid}"
        key = sample_key(fp, prompt, IMPORT_PARAMS, 0, None, idx)
        if idx < n:
            jobs.append((pid, idx, key))
        text = str(r["text"])
        if r.get("verifier_score") is not None or r.get("step_scores") is not None:
            steps = r.get("step_scores")
            scores.append({"key": key,
                           "verifier_score": _opt_float(r.get("verifier_score")),
                           "step_scores": [float(x) for x in steps] if steps is not None else None})
        records.append({
            "key": key, "schema_version": ROW_VERSION, "model_fp": fp,
            "model_id": identity.model_id, "weights_hash": identity.weights_hash,
            "engine": identity.engine, "engine_version": identity.engine_version,
            "dataset": task.name, "problem_id": pid, "prompt_sha": prompt_sha(prompt),
            "sample_index": idx, "base_seed": 0, "seed": None,
            "params_json": json.dumps(IMPORT_PARAMS), "temperature": None, "max_tokens": None,
            "text": text, "prompt_tokens": int(r.get("prompt_tokens") or 0),
            # Unknown counts are 0, never words passed off as tokens (see the note below).
            "completion_tokens": int(r.get("completion_tokens") or 0),
            "finish_reason": str(r.get("finish_reason") or "stop"),
            "mean_logprob": _opt_float(r.get("mean_logprob")),
            "token_logprobs": None, "latency_s": None, "created_at": time.time(),
        })
    store = GenerationStore(cfg.store_dir)
    new = _new_records(store, fp, records, model, path)
    store.write_shard(fp, new)
    import pandas as pd

    plan = pd.DataFrame(jobs, columns=["problem_id", "sample_index", "key"])
    run_dir = Path(cfg.runs_dir) / cfg.run_name
    _write_run_files(run_dir, cfg, plan, [by_id[p] for p in used_pids], task, identity)
    if scores:
        pd.DataFrame(scores).to_parquet(run_dir / "scores.parquet", index=False)
    else:  # scores from an earlier import of other generations must not linger
        (run_dir / "scores.parquet").unlink(missing_ok=True)
    gen = GenerationStats(planned=len(records), generated=len(new))
    if any(r.get("completion_tokens") is None for r in rows):
        gen.errors.append(f"{path}: some lines have no completion_tokens; they count 0 tokens, "
                          f"so token and FLOPs costs of this run are too low")
    return evaluate(run_dir, gen=gen)
