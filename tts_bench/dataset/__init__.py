"""Benchmarks as lists of problems: task definitions (tasks/*.yaml) plus data.

    task = load_task("math500")
    problems = load_problems(cfg.dataset)      # -> list[Problem]
    problems[0].messages                       # chat messages for the engine

Data comes from an explicit file, a local folder (``dataset.data_dir`` or
``$TTS_BENCH_DATA_DIR``), the Hugging Face hub, or a seeded generator. Every
failure says which source was tried and how to point at another.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, DatasetConfig
from ..engines.base import Message

__all__ = ["Problem", "Task", "check_task_names", "list_tasks", "load_problems", "load_task", "tasks_dir"]


@dataclass(frozen=True)
class Task:
    """One benchmark definition (a tasks/<name>.yaml file)."""

    name: str
    description: str
    prompt_user: str
    prompt_system: str | None
    extractor: str
    grader: str
    local_file: str | None = None
    local_fields: dict = field(default_factory=dict)
    hub: dict | None = None
    hub_fields: dict = field(default_factory=dict)
    hub_preprocess: str | None = None
    preprocess: str | None = None
    generator: str | None = None


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str  # the reference answer, as text
    messages: tuple[Message, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)


def tasks_dir() -> Path:
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg.parent / "tasks", pkg / "_tasks"):
        if cand.is_dir() and any(cand.glob("*.yaml")):
            return cand
    raise ConfigError(f"cannot find the tasks/ folder next to {pkg}; reinstall tts-bench")


def list_tasks() -> list[str]:
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


def load_task(name: str) -> Task:
    import yaml

    path = tasks_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown task '{name}'. Valid choices: {', '.join(list_tasks())}")
    raw = yaml.safe_load(path.read_text())
    prompt = raw.get("prompt") or {}
    return Task(
        name=raw["name"],
        description=str(raw.get("description", "")).strip(),
        prompt_user=prompt["user"],
        prompt_system=prompt.get("system"),
        extractor=raw["extractor"],
        grader=raw["grader"],
        local_file=raw.get("local_file"),
        local_fields=raw.get("local_fields") or {},
        hub=raw.get("hub"),
        hub_fields=raw.get("hub_fields") or {},
        hub_preprocess=raw.get("hub_preprocess"),
        preprocess=raw.get("preprocess"),
        generator=raw.get("generator"),
    )


# -- preprocessors and generators, registered by name ------------------------

_PREPROCESS: dict[str, Callable[[dict, int], dict]] = {}
_GENERATORS: dict[str, Callable[[DatasetConfig], list[dict]]] = {}


def preprocessor(name: str):
    def deco(fn):
        _PREPROCESS[name] = fn
        return fn

    return deco


def generator(name: str):
    def deco(fn):
        _GENERATORS[name] = fn
        return fn

    return deco


def check_task_names(task: Task) -> None:
    """Raise ConfigError, one line, if the task names an extractor, grader, preprocessor or
    generator that is not registered (composition calls this, before any model loads)."""
    from ..grading import list_extractors, list_graders

    kinds = [("extractor", task.extractor, list_extractors()), ("grader", task.grader, list_graders()),
             ("preprocess", task.preprocess, sorted(_PREPROCESS)),
             ("hub_preprocess", task.hub_preprocess, sorted(_PREPROCESS)),
             ("generator", task.generator, sorted(_GENERATORS))]
    for key, name, valid in kinds:
        if name is not None and name not in valid:
            raise ConfigError(f"tasks/{task.name}.yaml: unknown {key} '{name}'. "
                              f"Valid choices: {', '.join(valid)}")


@preprocessor("gsm8k_answer")
def _gsm8k_answer(row: dict, index: int) -> dict:
    answer = str(row["answer"]).split("####")[-1].strip().replace(",", "")
    return {"id": f"gsm8k-test-{index:04d}", "problem": row["problem"], "answer": answer}


@preprocessor("gpqa_choices")
def _gpqa_choices(row: dict, index: int) -> dict:
    # Choices are stored unshuffled (correct first); shuffle them with a seed
    # derived from the Record ID so every run and every user sees one order.
    try:
        rid = str(row["Record ID"]).strip()
        correct = str(row["Correct Answer"]).strip()
        wrong = [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
        question = str(row["Question"]).strip()
    except KeyError as e:
        raise ConfigError(
            f"GPQA row {index} has no column {e}; expected the columns of gpqa_diamond.csv "
            "(Question, Correct Answer, Incorrect Answer 1-3, Record ID)"
        ) from None
    choices = [correct, *wrong]
    seed = int(hashlib.sha256(f"gpqa:{rid}".encode()).hexdigest()[:16], 16)
    random.Random(seed).shuffle(choices)
    letters = "ABCD"
    text = question + "\n\n" + "\n".join(f"{letters[i]}) {c}" for i, c in enumerate(choices))
    return {
        "id": rid,
        "problem": text,
        "answer": letters[choices.index(correct)],
        "domain": row.get("High-level domain"),
    }


@generator("arith")
def _arith(cfg: DatasetConfig) -> list[dict]:
    for lv in cfg.levels:
        if lv not in (1, 2, 3, 4):
            raise ConfigError(f"dataset.levels has {lv}; arith levels are 1, 2, 3, 4")
    rng = random.Random(cfg.seed)
    rows: list[dict] = []
    seen: set[str] = set()
    i = 0
    while len(rows) < cfg.size:
        level = cfg.levels[len(rows) % len(cfg.levels)]
        i += 1
        if i > 100 * cfg.size + 100:
            raise ConfigError(f"dataset.size={cfg.size} is more than levels {cfg.levels} can make")
        if level == 1:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            expr, ans = f"{a} + {b}", a + b
        elif level == 2:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            if rng.random() < 0.5:
                expr, ans = f"{a} + {b}", a + b
            else:
                a, b = max(a, b), min(a, b)
                expr, ans = f"{a} - {b}", a - b
        elif level == 3:
            a, b = rng.randint(2, 9), rng.randint(11, 99)
            expr, ans = f"{a} * {b}", a * b
        else:
            a, b, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 9)
            expr, ans = f"({a} + {b}) * {c}", (a + b) * c
        if expr in seen:  # distinct prompts: equal prompts would share samples
            continue
        seen.add(expr)
        rows.append({"id": f"arith-{cfg.seed}-{len(rows):04d}", "problem": expr,
                     "answer": str(ans), "level": level})
    return rows


# -- loading ----------------------------------------------------------------


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        return rows
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data", [])
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    raise ConfigError(f"{path}: unsupported file type '{suffix}'; use .jsonl, .json, .csv or .parquet")


def _map_fields(rows: list[dict], fields: dict, source: str) -> list[dict]:
    if not fields:
        return rows
    out = []
    for i, row in enumerate(rows):
        mapped = dict(row)
        for ours, theirs in fields.items():
            if theirs is None:
                continue
            if theirs not in row:
                raise ConfigError(
                    f"{source}: row {i} has no field '{theirs}' (mapped to '{ours}'); "
                    f"fields present: {', '.join(sorted(row))}"
                )
            mapped[ours] = row[theirs]
        out.append(mapped)
    return out


def _from_hub(task: Task) -> list[dict]:
    if not task.hub:
        raise ConfigError(f"task '{task.name}' has no hub source; set dataset.data_dir")
    try:
        import datasets
    except ImportError:
        raise ConfigError("the 'datasets' package is needed to load from the hub") from None
    hub = task.hub
    try:
        ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hub["split"],
                                   revision=hub.get("revision"))
    except Exception as e:
        raise ConfigError(
            f"could not load {task.name} from the hub ({hub['path']}): "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}. "
            f"Offline? Point dataset.data_dir (or TTS_BENCH_DATA_DIR) at a folder with "
            f"{task.local_file or task.name + '.jsonl'}"
        ) from None
    return _map_fields([dict(r) for r in ds], task.hub_fields, f"hub:{hub['path']}")


def _raw_rows(task: Task, cfg: DatasetConfig) -> tuple[list[dict], str, str | None]:
    """Rows, a description of the source, and the preprocessor to apply."""
    if task.generator:
        return _GENERATORS[task.generator](cfg), f"generated:{task.generator}", None
    if cfg.source not in ("auto", "local", "hub"):
        raise ConfigError(f"dataset.source must be auto, local or hub, got '{cfg.source}'")
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset.path {path} does not exist; give the file's full path")
        return _map_fields(_read_file(path), task.local_fields, str(path)), str(path), None
    if cfg.source in ("auto", "local") and cfg.data_dir:
        folder = Path(cfg.data_dir).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"data directory {folder} does not exist; set dataset.data_dir "
                f"(or TTS_BENCH_DATA_DIR) to a folder holding {task.local_file}"
            )
        path = folder / (task.local_file or f"{task.name}.jsonl")
        if not path.is_file():
            raise ConfigError(
                f"{task.local_file} not found in data directory {folder}; "
                f"put it there or unset dataset.data_dir to load from the hub"
            )
        return _map_fields(_read_file(path), task.local_fields, str(path)), str(path), None
    if cfg.source == "local":
        raise ConfigError(
            f"dataset.source=local but no data directory is set; set dataset.data_dir "
            f"or TTS_BENCH_DATA_DIR to a folder holding {task.local_file}"
        )
    return _from_hub(task), f"hub:{task.hub['path'] if task.hub else '?'}", task.hub_preprocess


def _messages(task: Task, problem: str, system_prompt: str | None) -> tuple[Message, ...]:
    msgs = []
    system = system_prompt if system_prompt is not None else task.prompt_system
    if system:
        msgs.append(Message("system", system))
    # str.replace, not str.format: prompts contain literal braces (\boxed{}).
    msgs.append(Message("user", task.prompt_user.replace("{problem}", problem)))
    return tuple(msgs)


def load_problems(cfg: DatasetConfig, system_prompt: str | None = None) -> list[Problem]:
    """The selected problems of one benchmark, in the benchmark's order."""
    task = load_task(cfg.name)
    rows, source, pre = _raw_rows(task, cfg)
    pre = task.preprocess or pre
    if pre:
        rows = [_PREPROCESS[pre](r, i) for i, r in enumerate(rows)]
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, r in enumerate(rows):
        for key in ("id", "problem", "answer"):
            if r.get(key) is None or str(r[key]).strip() == "":
                raise ConfigError(f"{source}: row {i} has no '{key}'")
        pid = str(r["id"])
        if pid in seen:
            raise ConfigError(f"{source}: problem id '{pid}' appears twice; ids must be unique")
        seen.add(pid)
        meta: dict[str, Any] = {k: v for k, v in r.items()
                                if k not in ("id", "problem", "answer", "solution")
                                and isinstance(v, (str, int, float, bool))}
        meta["source"] = source
        problems.append(Problem(pid, str(r["problem"]), str(r["answer"]).strip(),
                                _messages(task, str(r["problem"]), system_prompt), meta))
    if cfg.ids:
        by_id = {p.id: p for p in problems}
        missing = [i for i in cfg.ids if i not in by_id]
        if missing:
            raise ConfigError(
                f"dataset.ids: {len(missing)} id(s) not in {task.name}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        problems = [by_id[i] for i in cfg.ids]
    if cfg.limit is not None:
        problems = problems[: cfg.limit]
    if not problems:
        raise ConfigError(f"{task.name}: no problems selected (check dataset.ids / dataset.limit)")
    return problems
