"""Compose a run configuration from conf/ and Hydra-style overrides.

    cfg = compose(["dataset=gsm8k", "budget.n=16"])   # -> RunConfig
    for overrides in expand_sweep(["budget.n=1,4", "dataset=a,b"]): ...

The YAML groups in conf/ are validated against the dataclasses in
``schema.py`` (registered in Hydra's ConfigStore as ``base_*``). Errors from
Hydra are rewritten into one :class:`ConfigError` that names what was wrong
and the valid choices.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from .schema import (
    AdaptiveConfig,
    AriseConfig,
    BudgetConfig,
    BudgetForcingConfig,
    DatasetConfig,
    EngineConfig,
    LauncherConfig,
    LlamaCppEngineConfig,
    ModelConfig,
    OpenAIEngineConfig,
    ReviseConfig,
    RunConfig,
    ScriptedEngineConfig,
    ShardConfig,
    StrategyConfig,
    VLLMEngineConfig,
)

__all__ = [
    "AdaptiveConfig",
    "AriseConfig",
    "BudgetConfig",
    "BudgetForcingConfig",
    "ReviseConfig",
    "ConfigError",
    "DatasetConfig",
    "EngineConfig",
    "LauncherConfig",
    "LlamaCppEngineConfig",
    "ModelConfig",
    "OpenAIEngineConfig",
    "RunConfig",
    "ScriptedEngineConfig",
    "ShardConfig",
    "StrategyConfig",
    "VLLMEngineConfig",
    "compose",
    "compose_dict",
    "conf_dir",
    "budget_ks",
    "expand_sweep",
    "group_options",
    "ks_for_budget",
    "to_yaml",
]

GROUPS = ("model", "dataset", "strategy", "budget", "engine", "launcher")
_SCHEMAS = {
    ("model", "base_model"): ModelConfig,
    ("dataset", "base_dataset"): DatasetConfig,
    ("strategy", "base_strategy"): StrategyConfig,
    ("strategy", "base_budget_forcing"): BudgetForcingConfig,
    ("strategy", "base_revise"): ReviseConfig,
    ("strategy", "base_adaptive"): AdaptiveConfig,
    ("budget", "base_budget"): BudgetConfig,
    ("engine", "base_llamacpp"): LlamaCppEngineConfig,
    ("engine", "base_vllm"): VLLMEngineConfig,
    ("engine", "base_openai"): OpenAIEngineConfig,
    ("engine", "base_scripted"): ScriptedEngineConfig,
    ("launcher", "base_launcher"): LauncherConfig,
}


class ConfigError(ValueError):
    """A configuration the user can fix; the message says how."""


def conf_dir() -> Path:
    """conf/ of a source checkout, or the copy inside an installed wheel."""
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg.parent / "conf", pkg / "_conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise ConfigError(f"cannot find conf/config.yaml next to {pkg}; reinstall tts-bench")


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for (group, name), node in _SCHEMAS.items():
        cs.store(group=group, name=name, node=node)
    _registered = True


def group_options(group: str) -> list[str]:
    """User-facing options of a config group (YAML files, not the base_ schemas)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def compose_dict(overrides: list[str] | tuple[str, ...] = ()):
    """The composed DictConfig (for printing); raises ConfigError on bad input."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _register()
    overrides = list(overrides)
    for o in overrides:
        _check_override(o)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except Exception as e:  # Hydra's own exceptions: rewrite them
        raise _rewrite(e, overrides) from None
    finally:
        GlobalHydra.instance().clear()


def compose(overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The typed RunConfig for these overrides (the one conversion point)."""
    from omegaconf import OmegaConf

    cfg = compose_dict(overrides)
    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as e:
        raise _rewrite(e, list(overrides)) from None
    _validate(obj)
    from ..strategies import check_capabilities

    check_capabilities(obj)
    _validate_task(obj.dataset.name)
    return obj


def to_yaml(cfg: RunConfig) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _check_override(o: str) -> None:
    if "=" not in o:
        raise ConfigError(
            f"bad override '{o}': expected key=value (e.g. dataset=gsm8k or budget.n=16)"
        )
    key, value = o.split("=", 1)
    key = key.lstrip("+~")
    if key in GROUPS and "," not in value and value not in group_options(key):
        raise ConfigError(
            f"unknown {key} '{value}'. Valid choices: {', '.join(group_options(key))}"
        )


def _rewrite(e: Exception, overrides: list[str]) -> ConfigError:
    msg = str(e) + ("\n" + str(e.__cause__) if e.__cause__ is not None else "")
    m = re.search(r"Could not find '(\w+)/([^']+)'", msg)
    if m and m.group(1) in GROUPS:
        group, value = m.group(1), m.group(2)
        return ConfigError(
            f"unknown {group} '{value}'. Valid choices: {', '.join(group_options(group))}"
        )
    m = re.search(r"Key '([^']+)' (?:is not in struct|not in '\w+')", msg)
    if m is None:
        m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        full = next((o.split("=", 1)[0].lstrip("+~") for o in overrides
                     if o.split("=", 1)[0].lstrip("+~").endswith(key)), key)
        parent = full.rsplit(".", 1)[0] if "." in full else None
        rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != full]
        valid = _valid_keys(parent, rest)
        where = f"in {parent}" if parent else "at the top level"
        return ConfigError(f"unknown config key '{full}'. Valid keys {where}: {', '.join(valid)}")
    m = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", msg)
    if m:
        full = re.search(r"full_key: (\S+)", msg)
        key = full.group(1) if full else "?"
        return ConfigError(f"bad value '{m.group(1)}' for {key}: expected {m.group(2).lower()}")
    first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
    return ConfigError(f"invalid configuration: {first}")


def _valid_keys(parent: str | None, overrides: list[str]) -> list[str]:
    """Keys that exist under ``parent`` in the config composed without the bad override."""
    try:
        node = compose_dict(overrides)
        for part in parent.split(".") if parent else []:
            node = node[part]
        return sorted(str(k) for k in node.keys())
    except Exception:
        return []


# Integer fields that must be >= the bound; None (where allowed) means "unset".
_MIN_INTS = {
    "engine.batch_size": 1, "engine.n_batch": 1, "engine.n_threads": 1, "engine.concurrency": 1,
    "engine.max_retries": 0, "engine.tensor_parallel_size": 1, "engine.max_model_len": 1,
    "engine.max_num_seqs": 1, "engine.max_num_batched_tokens": 1,
    "model.context_length": 1, "grade_workers": 1, "bootstrap": 0, "dataset.size": 1,
}


def _check_min_ints(cfg: RunConfig) -> None:
    """Counts and sizes a run divides by or loops over: wrong ones fail here, not mid-run."""
    for key, low in _MIN_INTS.items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part, None)
        if node is None or isinstance(node, bool):
            continue
        if node < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise ConfigError(f"{key} must be {what}, got {node}")


def _validate_task(name: str) -> None:
    """Every registered name in tasks/<name>.yaml exists, so a typo fails before any model loads."""
    from ..dataset import check_task_names, load_task

    check_task_names(load_task(name))


def _validate(cfg: RunConfig) -> None:
    if cfg.budget.n < 1:
        raise ConfigError(f"budget.n must be at least 1, got {cfg.budget.n}")
    _check_min_ints(cfg)
    for k in cfg.budget.ks or []:
        if not 1 <= k <= cfg.budget.n:
            raise ConfigError(
                f"budget.ks has k={k} outside 1..budget.n={cfg.budget.n}; "
                f"raise budget.n or drop that k"
            )
    if cfg.strategy.max_tokens < 1:
        raise ConfigError(f"strategy.max_tokens must be at least 1, got {cfg.strategy.max_tokens}")
    if not 0 <= cfg.shard.index < cfg.shard.count:
        raise ConfigError(
            f"shard.index={cfg.shard.index} must be in 0..shard.count-1={cfg.shard.count - 1}"
        )
    _validate_strategy(cfg)
    lc = cfg.launcher
    if lc.name not in ("local", "gpus"):
        raise ConfigError(f"unknown launcher.name '{lc.name}'. Valid choices: gpus, local")
    if lc.name == "gpus":
        if lc.gpus_per_worker < 1 or lc.max_restarts < 0:
            raise ConfigError("launcher.gpus_per_worker must be >= 1 and launcher.max_restarts >= 0")
        if cfg.shard.count > 1:
            raise ConfigError("launcher=gpus splits the plan itself; drop shard.index/shard.count")
        if cfg.arise.repeats:
            raise ConfigError("arise.repeats=true grades between repeats, so it runs in one process; "
                              "drop launcher=gpus or arise.repeats")
        if cfg.launcher.devices is not None and len(cfg.launcher.devices) % lc.gpus_per_worker:
            raise ConfigError(f"{len(cfg.launcher.devices)} devices do not split into groups of "
                              f"launcher.gpus_per_worker={lc.gpus_per_worker}")
    a = cfg.arise
    if a.repeats:
        if not 1 <= a.min_runs <= a.max_runs:
            raise ConfigError(f"arise.min_runs={a.min_runs} and arise.max_runs={a.max_runs} need "
                              f"1 <= min_runs <= max_runs")
        if cfg.shard.count > 1:
            raise ConfigError("arise.repeats=true grades between repeats, so it runs in one process; "
                              "drop shard.count or arise.repeats")
    if cfg.dataset.limit is not None and cfg.dataset.limit < 1:
        raise ConfigError(f"dataset.limit must be a positive integer, got {cfg.dataset.limit}")


def _validate_strategy(cfg: RunConfig) -> None:
    s = cfg.strategy
    ctx = cfg.model.context_length
    if isinstance(s, BudgetForcingConfig):
        b = list(s.budgets)
        if not b or any(x < 1 for x in b) or b != sorted(set(b)):
            raise ConfigError(f"strategy.budgets must be increasing positive token counts, got {b}")
        if s.answer_max_tokens < 1:
            raise ConfigError(f"strategy.answer_max_tokens must be at least 1, got {s.answer_max_tokens}")
        if b[-1] + s.answer_max_tokens >= ctx:
            raise ConfigError(
                f"strategy.budgets up to {b[-1]} plus strategy.answer_max_tokens={s.answer_max_tokens} "
                f"leave no room for the prompt in model.context_length={ctx}; lower the budgets "
                f"or raise model.context_length"
            )
        if s.max_extensions < 0:
            raise ConfigError(f"strategy.max_extensions must be >= 0, got {s.max_extensions}")
        if s.max_extensions and not s.extend_with:
            raise ConfigError("strategy.max_extensions > 0 needs strategy.extend_with (e.g. Wait)")
    elif isinstance(s, ReviseConfig):
        if s.depth < 1 or s.context < 1:
            raise ConfigError(f"strategy.depth and strategy.context must be >= 1, got {s.depth}, {s.context}")
    elif isinstance(s, AdaptiveConfig):
        if not 0.5 < s.confidence < 1:
            raise ConfigError(f"strategy.confidence must be in (0.5, 1), got {s.confidence}")
        if s.round_size < 1:
            raise ConfigError(f"strategy.round_size must be >= 1, got {s.round_size}")
        if s.compare_fixed and cfg.shard.count > 1:
            raise ConfigError(
                "strategy.compare_fixed needs the mean samples over every problem, which one shard "
                "process does not see; set strategy.compare_fixed=false with shard.count > 1"
            )


def budget_ks(cfg: RunConfig) -> list[int]:
    """The k grid: budget.ks, or powers of two up to n plus n itself."""
    return ks_for_budget(cfg.budget)


def ks_for_budget(budget: BudgetConfig) -> list[int]:
    if budget.ks:
        return sorted(set(budget.ks))
    ks = [2**i for i in range(64) if 2**i <= budget.n]
    return sorted(set(ks + [budget.n]))


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Hydra multirun semantics: the cartesian product of comma-separated sweeps."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception as e:
        raise ConfigError(f"bad override: {str(e).strip().splitlines()[0]}") from None
    axes: list[list[str]] = []
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            axes.append([f"{key}={ov.get_value_element_as_str()}"])
    return [list(c) for c in itertools.product(*axes)] if axes else [[]]
