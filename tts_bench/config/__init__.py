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
    GenRMConfig,
    HTTPRewardConfig,
    LauncherConfig,
    LlamaCppEngineConfig,
    ModelConfig,
    OpenAIEngineConfig,
    ReviseConfig,
    RewardModelConfig,
    RunConfig,
    ScriptedEngineConfig,
    SearchConfig,
    ShardConfig,
    StrategyConfig,
    TransformersEngineConfig,
    VerifierConfig,
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
    "GenRMConfig",
    "HTTPRewardConfig",
    "LauncherConfig",
    "LlamaCppEngineConfig",
    "ModelConfig",
    "OpenAIEngineConfig",
    "RewardModelConfig",
    "RunConfig",
    "ScriptedEngineConfig",
    "SearchConfig",
    "ShardConfig",
    "StrategyConfig",
    "TransformersEngineConfig",
    "VerifierConfig",
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

GROUPS = ("model", "dataset", "strategy", "budget", "engine", "launcher", "verifier")
_SCHEMAS = {
    ("model", "base_model"): ModelConfig,
    ("dataset", "base_dataset"): DatasetConfig,
    ("strategy", "base_strategy"): StrategyConfig,
    ("strategy", "base_budget_forcing"): BudgetForcingConfig,
    ("strategy", "base_revise"): ReviseConfig,
    ("strategy", "base_adaptive"): AdaptiveConfig,
    ("strategy", "base_search"): SearchConfig,
    ("budget", "base_budget"): BudgetConfig,
    ("engine", "base_llamacpp"): LlamaCppEngineConfig,
    ("engine", "base_vllm"): VLLMEngineConfig,
    ("engine", "base_openai"): OpenAIEngineConfig,
    ("engine", "base_scripted"): ScriptedEngineConfig,
    ("engine", "base_transformers"): TransformersEngineConfig,
    ("launcher", "base_launcher"): LauncherConfig,
    ("verifier", "base_verifier"): VerifierConfig,
    ("verifier", "base_reward_model"): RewardModelConfig,
    ("verifier", "base_http_reward"): HTTPRewardConfig,
    ("verifier", "base_genrm"): GenRMConfig,
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


def config_from_dict(d: dict) -> RunConfig:
    """The RunConfig a run recorded (its manifest's ``config``), typed again.

    The polymorphic groups (strategy, engine, launcher, verifier) get the
    schema class their recorded name or kind selects; keys a schema no longer
    has are dropped, keys it gained take their defaults.
    """
    import dataclasses

    def build(cls, values):
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in (values or {}).items() if k in names}
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) and isinstance(kw.get(f.name), dict):
                kw[f.name] = build(f.type, kw[f.name])
        return cls(**kw)

    def pick(group: str, values: dict, attr: str, fallback):
        """The group's schema whose default ``attr`` is the recorded one, else the one whose
        fields best cover the recorded keys (search strategies share one schema)."""
        values = values or {}
        classes = [cls for (g, _), cls in _SCHEMAS.items() if g == group]
        for cls in classes:
            if cls is not fallback and getattr(cls, attr, None) == values.get(attr):
                return build(cls, values)
        keys = set(values)

        def fit(cls):
            names = {f.name for f in dataclasses.fields(cls)}
            return (len(keys & names), -len(names - keys))

        return build(max(classes, key=fit) if keys else fallback, values)

    top = {k: v for k, v in d.items() if k not in ("model", "dataset", "budget", "shard", "arise", "strategy",
                                                   "engine", "launcher", "verifier")}
    return RunConfig(
        model=build(ModelConfig, d.get("model")), dataset=build(DatasetConfig, d.get("dataset")),
        budget=build(BudgetConfig, d.get("budget")), shard=build(ShardConfig, d.get("shard")),
        arise=build(AriseConfig, d.get("arise")),
        strategy=pick("strategy", d.get("strategy"), "name", StrategyConfig),
        engine=pick("engine", d.get("engine"), "name", EngineConfig),
        launcher=build(LauncherConfig, d.get("launcher")),
        verifier=pick("verifier", d.get("verifier"), "kind", VerifierConfig),
        **{k: v for k, v in top.items() if k in {f.name for f in dataclasses.fields(RunConfig)}})


def with_verifier(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """``cfg`` with the verifier these overrides compose (``verifier=genrm verifier.verifications=4``)."""
    import dataclasses

    bad = [o for o in overrides if not o.lstrip("+~").startswith("verifier")]
    if bad:
        raise ConfigError(f"only verifier overrides apply to a finished run; drop {' '.join(bad)}")
    out = dataclasses.replace(cfg, verifier=_composed_verifier(overrides))
    _validate_verifier(out)
    from ..strategies import check_capabilities

    check_capabilities(out)
    return out


def _composed_verifier(overrides: list[str]):
    from omegaconf import OmegaConf

    cfg = compose_dict(overrides)
    try:
        return OmegaConf.to_object(cfg).verifier
    except Exception as e:
        raise _rewrite(e, list(overrides)) from None


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
    _validate_verifier(cfg)
    engine_check = getattr(cfg.engine, "check", None)
    if engine_check is not None:
        engine_check(cfg.model)
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
    elif isinstance(s, SearchConfig):
        ns = list(s.ns) if s.ns else [cfg.budget.n]
        if any(n < 1 for n in ns) or ns != sorted(set(ns)):
            raise ConfigError(f"strategy.ns must be increasing positive counts, got {ns}")
        if s.name in ("beam-search", "dvts") and any(n % s.beam_width for n in ns):
            raise ConfigError(f"strategy={s.name} splits N into N/M beams: every N in {ns} must be a "
                              f"multiple of strategy.beam_width={s.beam_width}")
        if s.beam_width < 1 or s.max_steps < 1 or s.max_expansions < 1:
            raise ConfigError("strategy.beam_width, strategy.max_steps and strategy.max_expansions "
                              "must be >= 1")
        if not s.step_delimiter:
            raise ConfigError("strategy.step_delimiter must not be empty (a step ends there)")
        if s.softmax_temperature <= 0 or s.rebase_temperature <= 0:
            raise ConfigError("strategy.softmax_temperature and strategy.rebase_temperature must be > 0")
        if s.ess_threshold is not None and not 0 < s.ess_threshold <= 1:
            raise ConfigError(f"strategy.ess_threshold must be in (0, 1], got {s.ess_threshold}")
        if cfg.verifier.kind == "none":
            raise ConfigError(f"strategy={s.name} asks a verifier which partial solutions to keep: add "
                              f"verifier=genrm or a reward model (tts-bench list shows them)")
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


VERIFIER_KINDS = ("none", "prm", "orm", "genrm", "http")


def _validate_verifier(cfg: RunConfig) -> None:
    from ..metrics.selection import STEP_AGGREGATES

    v = cfg.verifier
    if v.kind not in VERIFIER_KINDS:
        raise ConfigError(f"unknown verifier.kind '{v.kind}'. Valid choices: {', '.join(VERIFIER_KINDS)}")
    if v.aggregate not in STEP_AGGREGATES:
        raise ConfigError(f"unknown verifier.aggregate '{v.aggregate}'. "
                          f"Valid choices: {', '.join(STEP_AGGREGATES)}")
    if v.batch_size < 1:
        raise ConfigError(f"verifier.batch_size must be at least 1, got {v.batch_size}")
    if isinstance(v, RewardModelConfig) and v.model_class not in REWARD_MODEL_CLASSES:
        raise ConfigError(f"unknown verifier.model_class '{v.model_class}'. "
                          f"Valid choices: {', '.join(REWARD_MODEL_CLASSES)}")
    if isinstance(v, (RewardModelConfig, HTTPRewardConfig)):
        for name, value, valid in (("template", v.template, ("chat", "plain", "turns")),
                                   ("score_at", v.score_at, ("separator", "turn", "last")),
                                   ("readout", v.readout, ("class_prob", "token_pair", "sigmoid", "raw"))):
            if value not in valid:
                raise ConfigError(f"unknown verifier.{name} '{value}'. Valid choices: {', '.join(valid)}")
        if v.score_at == "separator" and not v.step_suffix:
            raise ConfigError("verifier.score_at=separator needs verifier.step_suffix (the step tag token)")
        if (v.template == "turns") != (v.score_at == "turn"):
            raise ConfigError("verifier.template=turns and verifier.score_at=turn go together "
                              "(each step a user turn, scored where the assistant replies)")
    if isinstance(v, GenRMConfig):
        if v.verifications < 1 or v.max_tokens < 1:
            raise ConfigError(f"verifier.verifications and verifier.max_tokens must be >= 1, "
                              f"got {v.verifications} and {v.max_tokens}")
        if "{solution}" not in v.prompt or "{question}" not in v.prompt:
            raise ConfigError("verifier.prompt must contain {question} and {solution}")
        if not v.yes or not v.no:
            raise ConfigError("verifier.yes and verifier.no need at least one word each")


REWARD_MODEL_CLASSES = ("token-classification", "causal-lm", "sequence-classification", "value-head")


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
