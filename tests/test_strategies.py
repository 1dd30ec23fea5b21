"""Strategies on the cached call layer: budget forcing, revisions, adaptive consistency,
and stores written before calls existed. Scripted engine runs are hand-worked."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli

from tts_bench.calls import Call, CallLayer
from tts_bench.config import ConfigError, compose
from tts_bench.engines import make_engine
from tts_bench.engines.base import Message, SamplingParams
from tts_bench.engines.scripted import word_id
from tts_bench.metrics.strategies import level_table, majority_credit, s1_table
from tts_bench.store import GenerationStore
from tts_bench.strategies import StrategyProblem
from tts_bench.strategies.adaptive import beta_majority_probability, should_stop

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"


def _script(path: Path, rules: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"match": m, "texts": t}) + "\n" for m, t in rules))
    return path


def _layer(tmp_path, script: Path, **kw):
    cfg = compose(["engine=scripted", f"engine.script={script}"])
    engine = make_engine(cfg.engine, cfg.model)
    return engine, CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t",
                             batch_size=4, **kw)


def _run(tmp_path, *args):
    return cli("run", "--no-progress", "bootstrap=100", *args, cwd=tmp_path)


def _only_run(cwd: Path) -> Path:
    runs = sorted((cwd / "results" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


# -- the call layer ------------------------------------------------------------


def test_layer_answers_stored_calls_without_the_engine(tmp_path):
    script = _script(tmp_path / "s.jsonl", [("hi", ["a b c", "d e"])])
    engine, layer = _layer(tmp_path, script)
    call = Call("p", (Message("user", "hi"),), SamplingParams(0.7, 1.0, 8), indices=(0, 1))
    [first] = layer.generate([call])
    assert [r.text for r in first] == ["a b c", "d e"] and engine.calls == 2
    engine2, layer2 = _layer(tmp_path, script)
    [again] = layer2.generate([call])
    assert engine2.calls == 0 and [r.key for r in again] == [r.key for r in first]
    assert all(r.cached for r in again) and again[0].token_ids == first[0].token_ids
    # A prefix is another call: another key, generated once.
    cont = dataclasses.replace(call, prefix="a b", indices=(0,), parent_key=first[0].key, step=1)
    [[c]] = layer2.generate([cont])
    assert engine2.calls == 1 and c.key not in {r.key for r in first}
    row = GenerationStore(tmp_path / "store").read(layer2.model_fp, keys={c.key}).to_pylist()[0]
    assert row["parent_key"] == first[0].key and row["step"] == 1 and row["prefix_sha"]
    assert c.text == " c"  # the script text "a b c" continued after the prefix "a b"
    assert row["stop_reason"] == "eos" and row["token_ids"] == [word_id("c")]


def test_capability_missing_fails_at_compose_with_one_line():
    with pytest.raises(ConfigError) as e:
        compose(["strategy=budget-forcing", "engine=openai"])
    assert str(e.value) == (
        "strategy=budget-forcing needs an engine with prefix, token_ids; engine=openai lacks "
        "prefix, token_ids. Use engine=llamacpp or engine=vllm")


def test_a_budget_grid_without_room_is_a_config_error():
    with pytest.raises(ConfigError, match="leave no room for the prompt"):
        compose(["strategy=budget-forcing-short", "strategy.budgets=[1000,2040]", "engine=scripted"])
    with pytest.raises(ConfigError, match="increasing positive"):
        compose(["strategy=budget-forcing-short", "strategy.budgets=[16,8]", "engine=scripted"])


def test_strategies_never_see_the_reference_answer():
    assert [f.name for f in dataclasses.fields(StrategyProblem)] == ["id", "messages"]


# -- stores written before calls existed ------------------------------------------


def _copy_fixture_store(tmp_path: Path) -> None:
    dest = tmp_path / "results" / "store" / "generations"
    shutil.copytree(FIXTURE / "generations", dest)


def test_store_written_by_the_previous_release_is_reused_scripted(tmp_path):
    _copy_fixture_store(tmp_path)
    out = _run(tmp_path, "engine=scripted", f"engine.script={FIXTURE / 'script.jsonl'}", "dataset.size=4",
               "budget.n=4", "plot=false").stdout
    assert "16 samples planned (4 problems x n=4); 16 already stored; 0 to generate" in out
    samples = pd.read_parquet(_only_run(tmp_path) / "samples.parquet")
    old = pd.DataFrame(json.loads((FIXTURE / "scripted.json").read_text())["samples"])
    merged = old.merge(samples, on=["problem_id", "sample_index"], suffixes=("_old", ""))
    assert len(merged) == 16 and (merged.key_old == merged.key).all()
    assert (merged.text_old == merged.text).all()


@pytest.mark.model
def test_store_written_by_the_previous_release_is_reused_llamacpp(tmp_path):
    _copy_fixture_store(tmp_path)
    out = _run(tmp_path, "dataset.size=3", "budget.n=2", "plot=false").stdout
    assert "6 samples planned (3 problems x n=2); 6 already stored; 0 to generate" in out
    samples = pd.read_parquet(_only_run(tmp_path) / "samples.parquet")
    old = pd.DataFrame(json.loads((FIXTURE / "llamacpp.json").read_text())["samples"])
    assert sorted(old.key) == sorted(samples.key)
    assert dict(zip(old.key, old.text)) == dict(zip(samples.key, samples.text))


# -- budget forcing ----------------------------------------------------------------


def _bf_problems():
    return [StrategyProblem("p1", (Message("user", "Q1"),)), StrategyProblem("p2", (Message("user", "Q2"),))]


def _bf(tmp_path, script, budgets, n=2, extensions=0):
    from tts_bench.strategies import AnswerReader, make_strategy

    cfg = compose(["strategy=budget-forcing-short", "engine=scripted", f"engine.script={script}",
                   f"strategy.budgets=[{','.join(map(str, budgets))}]", f"budget.n={n}",
                   f"strategy.max_extensions={extensions}", "strategy.extend_with=Wait"])
    engine = make_engine(cfg.engine, cfg.model)
    layer = CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t", batch_size=8)
    return engine, make_strategy(cfg, AnswerReader("number")).run(_bf_problems(), layer)


def test_budget_forcing_caps_thinking_and_shares_one_generation(tmp_path):
    # Thinking: p1 thinks 10 words then ends (EOS); p2 thinks 30 words without ending.
    # Forced answers: the word after the cue.
    script = _script(tmp_path / "s.jsonl", [
        ("Final Answer:", ["7 <eos>"]),
        ("Q1", [" ".join(f"a{i}" for i in range(10)) + " <eos>"]),
        ("Q2", [" ".join(f"b{i}" for i in range(30))]),
    ])
    engine, traj = _bf(tmp_path, script, [4, 8, 16])
    by = {(t.problem_id, t.trajectory, t.level): t for t in traj}
    assert len(traj) == 2 * 2 * 3
    # p1 ends at 10 words: budgets 4 and 8 cap it, 16 sees the natural end.
    assert [by[("p1", 0, b)].phase_tokens["thinking"] for b in (4, 8, 16)] == [4, 8, 10]
    assert [by[("p2", 0, b)].phase_tokens["thinking"] for b in (4, 8, 16)] == [4, 8, 16]
    assert by[("p2", 1, 8)].text.startswith("b0 b1 b2 b3 b4 b5 b6 b7\n\nFinal Answer: 7")
    # Engine samples: p1 thinks in 3 segments (0-4, 4-8, 8-end), p2 in 3 (0-4, 4-8, 8-16);
    # answers: 3 per sample. Each budget's answer prefix differs: 2 problems x 2 samples x (3 + 3).
    assert engine.calls == 2 * 2 * (3 + 3)
    # Tokens generated: thinking to the largest budget once, plus one answer per budget,
    # not the sum of the budgets.
    thinking_generated = sum(r.completion_tokens for t in traj if t.level == 16 for r in t.calls[:-1])
    assert thinking_generated == 2 * (10 + 16)


def test_budget_forcing_rerun_and_raised_budget_generate_only_what_is_new(tmp_path):
    script = _script(tmp_path / "s.jsonl", [
        ("Final Answer:", ["7 <eos>"]), ("Q", [" ".join(f"w{i}" for i in range(40))]),
    ])
    _bf(tmp_path, script, [4, 8])
    engine, _ = _bf(tmp_path, script, [4, 8])
    assert engine.calls == 0
    engine, traj = _bf(tmp_path, script, [4, 8, 16])
    # Only the 8->16 segment and the budget-16 answer, per sample.
    assert engine.calls == 2 * 2 * 2
    assert all(r.prefix_tokens == 8 for r in engine_requests_prefixes(engine))
    assert max(t.phase_tokens["thinking"] for t in traj) == 16


def engine_requests_prefixes(engine):
    """The thinking-continuation requests an engine saw, as (prefix token count) records."""
    return [type("R", (), {"prefix_tokens": len(r.prefix_ids)})() for r in engine.requests
            if "Final Answer:" not in r.prefix]


def test_budget_forcing_extends_an_early_end_with_wait(tmp_path):
    script = _script(tmp_path / "s.jsonl", [
        ("Final Answer:", ["7 <eos>"]),
        ("Wait", ["c1 c2 c3 c4 c5 c6 c7 c8 c9 c10"]),
        ("Q", ["x1 x2 <eos>"]),
    ])
    _, traj = _bf(tmp_path, script, [8, 16], n=1, extensions=1)
    t8 = next(t for t in traj if t.problem_id == "p1" and t.level == 8)
    # 2 thinking words, EOS suppressed: "Wait" (1 token) appended, continued to the cap.
    assert t8.text.startswith("x1 x2Wait c1 c2 c3 c4 c5\n\nFinal Answer: 7")
    assert t8.phase_tokens == {"thinking": 8, "answer": 1, "extension": 1}  # EOS not counted
    stops = [c.stop_reason for c in t8.calls]
    assert stops == ["eos", "length", "eos"]


# -- revisions and adaptive consistency ----------------------------------------------


def test_revise_accuracy_per_depth_and_chain_majority(tmp_path):
    from tts_bench.strategies import AnswerReader, make_strategy

    # The first attempt says 3; each revision (it sees the previous attempt) says 5.
    script = _script(tmp_path / "s.jsonl", [("Review your previous answer", ["5"]), ("Q", ["3"])])
    cfg = compose(["strategy=revise", "strategy.depth=3", "engine=scripted", f"engine.script={script}",
                   "budget.n=2"])
    engine = make_engine(cfg.engine, cfg.model)
    layer = CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t", batch_size=8)
    traj = make_strategy(cfg, AnswerReader("number")).run(_bf_problems()[:1], layer)
    assert sorted((t.trajectory, t.level, t.text) for t in traj) == [
        (0, 1, "3"), (0, 2, "5"), (0, 3, "5"), (1, 1, "3"), (1, 2, "5"), (1, 3, "5")]
    # Depth 3 sees both earlier attempts as assistant turns.
    last = engine.requests[-1]
    assert [m.role for m in last.messages] == ["user", "assistant", "user", "assistant", "user"]
    from tts_bench.metrics.strategies import revise_tables

    g = pd.DataFrame([{**t.row(), "answer_class": t.text, "correct": t.text == "5"} for t in traj])
    tables = revise_tables(g, n_boot=10)
    d = tables["revise_depth"].set_index("depth")
    assert d.last_answer.tolist() == [0.0, 1.0, 1.0]
    # Chain majority at depth 2: {3, 5} tie -> 1/2; depth 3: {3, 5, 5} -> 5.
    assert d.chain_majority.tolist() == [0.0, 0.5, 1.0]


def test_adaptive_stopping_rule_hand_values():
    assert beta_majority_probability(5, 0) == pytest.approx(1 - 0.5**6)
    assert beta_majority_probability(3, 2) == pytest.approx(0.65625)
    assert should_stop(["A"] * 5, 0.95) and not should_stop(["A"] * 3 + ["B"] * 2, 0.95)
    assert not should_stop([None, None], 0.5 + 1e-9)  # unreadable answers never vote


def test_adaptive_stops_settled_problems_early(tmp_path):
    from tts_bench.strategies import AnswerReader, make_strategy

    # p1 always answers 4: settled after 4 samples (Beta(5,1): 0.969 >= 0.95).
    # p2 alternates 1, 2: never settled, runs to budget.n = 8.
    script = _script(tmp_path / "s.jsonl", [("Q1", ["4"]), ("Q2", ["1", "2"])])
    cfg = compose(["strategy=adaptive", "engine=scripted", f"engine.script={script}", "budget.n=8"])
    engine = make_engine(cfg.engine, cfg.model)
    layer = CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t", batch_size=8)
    traj = make_strategy(cfg, AnswerReader("number")).run(_bf_problems(), layer)
    used = pd.Series([t.problem_id for t in traj if t.level == 1]).value_counts().to_dict()
    assert used == {"p1": 4, "p2": 8}
    fixed = pd.Series([t.problem_id for t in traj if t.level == 0]).value_counts().to_dict()
    assert fixed == {"p1": 6, "p2": 6}  # ceil(mean 6): indices 0..5, the same calls as parallel
    assert engine.calls == 4 + 8 + 2  # p1's samples 4 and 5 are new; the rest are stored


def test_s1_table_and_majority_credit_hand_values():
    assert majority_credit(["a", "b"], [True, False]) == 0.5
    assert majority_credit([None, "b", "b"], [True, False, False]) == 0.0
    levels = pd.DataFrame({"level": [1000, 2000, 4000], "accuracy": [0.30, 0.40, 0.45],
                           "mean_thinking_tokens": [1000, 2000, 4000]})
    # A trace that ended on its own below the smallest budget is within control.
    graded = pd.DataFrame({"level": [1000, 2000, 4000], "thinking_tokens": [900, 2000, 3000]})
    row = s1_table(levels, graded, [1000, 2000, 4000]).iloc[0]
    assert row.scaling_points_per_1k_tokens == pytest.approx(5.8333333)
    assert row.performance_points == pytest.approx(45.0)
    assert row.control == 1.0 and row.over_max_budget == 0 and row.control_of_budget_means == 1.0
    over = pd.concat([graded, pd.DataFrame({"level": [4000], "thinking_tokens": [4100]})])
    row = s1_table(levels, over, [1000, 2000, 4000]).iloc[0]
    assert row.control == 0.75 and row.over_max_budget == 1


def test_level_table_accuracy_and_tokens():
    g = pd.DataFrame({"level": [1, 1, 1, 1, 2, 2], "problem_id": ["a", "a", "b", "b", "a", "b"],
                      "correct": [True, False, True, True, True, False],
                      "answer_class": ["x", "y", "z", "z", "x", "q"],
                      "completion_tokens": [10, 20, 30, 40, 50, 60]})
    t = level_table(g, n_boot=50).set_index("level")
    assert t.loc[1, "accuracy"] == pytest.approx(0.75) and t.loc[1, "majority"] == pytest.approx(0.75)
    assert t.loc[2, "mean_completion_tokens"] == 55


# -- whole runs ----------------------------------------------------------------------


def test_budget_forcing_run_end_to_end_scripted_and_invocations_kept(tmp_path):
    script = _script(tmp_path / "s.jsonl", [
        ("Final Answer:", ["{} <eos>".format(i) for i in range(3)]),
        ("What is", [" ".join(f"t{i}" for i in range(20))]),
    ])
    args = ["engine=scripted", f"engine.script={script}", "strategy=budget-forcing-short", "dataset.size=3",
            "budget.n=2", "strategy.max_extensions=0", "plot=false"]
    _run(tmp_path, *args)
    _run(tmp_path, *args)
    run = _only_run(tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    gens = [inv["generation"]["generated"] for inv in m["invocations"]]
    assert gens[0] > 0 and gens[1] == 0
    levels = pd.read_csv(run / "analysis" / "levels.csv")
    assert levels.level.tolist() == [8, 16, 32]
    assert levels.mean_thinking_tokens.tolist() == [8, 16, 20]
    s1 = pd.read_csv(run / "analysis" / "s1.csv")
    assert s1.over_max_budget.item() == 0
    traj = pd.read_parquet(run / "trajectories" / "part-0-of-1.parquet")
    assert (traj.thinking_tokens <= traj.level).all() and len(traj) == 3 * 2 * 3


def test_adaptive_run_ignores_the_gold(tmp_path):
    """Two datasets that differ only in their reference answers give the same calls."""
    script = _script(tmp_path / "s.jsonl", [("?", ["4", "4", "5"])])
    keys = []
    for gold in ("4", "5"):
        d = tmp_path / f"data{gold}"
        d.mkdir()
        rows = [{"id": f"q{i}", "problem": f"What is {i}+{i}?", "answer": f"#### {gold}"} for i in range(3)]
        (d / "gsm8k_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cwd = tmp_path / f"cwd{gold}"
        cwd.mkdir()
        _run(cwd, "engine=scripted", f"engine.script={script}", "strategy=adaptive", "dataset=gsm8k",
             f"dataset.data_dir={d}", "budget.n=8", "plot=false")
        traj = pd.read_parquet(_only_run(cwd) / "trajectories" / "part-0-of-1.parquet")
        keys.append(sorted(traj.key))
    assert keys[0] == keys[1]


# -- ARISE adaptive repeats ----------------------------------------------------------


def test_arise_settled_runs_follow_the_rule_per_level():
    from tts_bench.runner.arise import arise_summary, settled_runs

    rows = []
    for r in range(10):
        rows.append(("steady", r, 1, 1.0, 100.0))  # CV 0: three repeats settle it
        rows.append(("noisy", r, 1, float(r % 2), 100.0))  # CV(acc) = 1 > 0.5: up to ten
        # CV(acc) of [1,0,1] is 0.71, of [1,0,1,1] 0.58, of [1,0,1,1,1] exactly 0.5: five.
        rows.append(("late", r, 1, [1.0, 0.0, 1.0, 1.0, 1.0][r] if r < 5 else 0.0, 100.0))
    stats = pd.DataFrame(rows, columns=["problem_id", "repeat", "level", "accuracy", "tokens"])
    s = settled_runs(stats, min_runs=3, max_runs=10, threshold=0.5).set_index("problem_id")
    assert s.loc["steady", "runs"] == 3 and s.loc["noisy", "runs"] == 10
    assert s.loc["late", "runs"] == 5 and s.loc["late", "accuracy"] == pytest.approx(0.8)
    assert s.loc["noisy", "accuracy"] == pytest.approx(0.5)
    assert not s["need_more"].any()  # ten is the cap
    assert arise_summary(s.reset_index()).loc[0, "max_runs"] == 10


# -- review fixes: edges that used to be wrong ---------------------------------------


def test_postponed_wait_never_pushes_thinking_over_the_next_budget(tmp_path):
    # Budgets 4 and 5, a 3-word Wait: the early end at 3 words leaves no room for the
    # Wait at budget 4, nor at budget 5 (5 - 3 = 2 <= 3), so thinking stays at 3.
    script = _script(tmp_path / "s.jsonl", [("Final Answer:", ["7 <eos>"]), ("Q", ["one two three <eos>"])])
    from tts_bench.strategies import AnswerReader, make_strategy

    cfg = compose(["strategy=budget-forcing-short", "engine=scripted", f"engine.script={script}",
                   "strategy.budgets=[4,5]", "budget.n=1", "strategy.max_extensions=1",
                   "strategy.extend_with=w1 w2 w3"])
    engine = make_engine(cfg.engine, cfg.model)
    layer = CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t", batch_size=8)
    traj = make_strategy(cfg, AnswerReader("number")).run(_bf_problems()[:1], layer)
    assert all(t.phase_tokens["thinking"] <= t.level for t in traj)
    assert [t.phase_tokens["thinking"] for t in traj] == [3, 3]


def test_adaptive_fixed_comparison_refuses_shards_and_runs_without_it(tmp_path):
    with pytest.raises(ConfigError, match="strategy.compare_fixed=false with shard.count > 1"):
        compose(["strategy=adaptive", "engine=scripted", "shard.count=2"])
    script = _script(tmp_path / "s.jsonl", [("What is", ["4", "4", "5"])])
    _run(tmp_path, "engine=scripted", f"engine.script={script}", "strategy=adaptive",
         "strategy.compare_fixed=false", "dataset.size=3", "budget.n=8", "plot=false")
    run = _only_run(tmp_path)
    table = pd.read_csv(run / "analysis" / "adaptive.csv")
    assert table.arm.tolist() == ["adaptive"]
    cost = pd.read_csv(run / "analysis" / "strategy_cost.csv")
    # Per problem: the samples the rule kept, not one sample's tokens.
    assert cost.loc[0, "tokens"] == pytest.approx(table.loc[0, "mean_samples"] * 1.0)


def test_report_keeps_arise_repeat_tables(tmp_path):
    script = _script(tmp_path / "s.jsonl", [("What is", ["4", "5"])])
    _run(tmp_path, "engine=scripted", f"engine.script={script}", "dataset.size=2", "budget.n=2",
         "arise.repeats=true", "plot=false")
    run = _only_run(tmp_path)
    samples = pd.read_parquet(run / "samples.parquet")
    assert sorted(samples["repeat"].unique()) == [0, 1, 2]  # scripted repeats settle at three
    (run / "analysis" / "arise_repeats.csv").unlink()
    cli("report", str(run), "--bootstrap", "50", "--no-html", cwd=tmp_path)
    assert pd.read_csv(run / "analysis" / "arise_repeats.csv")["runs"].eq(3).all()


def _invocations(path: str, who: int) -> None:
    from tts_bench.runner import RunDir

    for i in range(40):
        RunDir(Path(path)).add_invocation({"who": who, "i": i})


def test_manifest_writer_loses_no_update_between_processes(tmp_path):
    import multiprocessing as mp

    from tts_bench.runner import RunDir

    RunDir(tmp_path).update({"run_name": "r"})
    procs = [mp.get_context("spawn").Process(target=_invocations, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    inv = RunDir(tmp_path).read_manifest()["invocations"]
    assert len(inv) == 120 and sorted({(e["who"], e["i"]) for e in inv}) == [
        (w, i) for w in range(3) for i in range(40)]
