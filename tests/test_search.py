"""Verifier-guided search against hand-worked trees: a scripted policy, a scripted verifier.

The scripted engine continues an assistant prefix from the first script rule
whose text occurs in prompt + prefix (deeper rules first), so each tree below
is written out node by node; the scripted verifier scores a partial solution
by a table of its steps' texts. Every test reads what the engine was asked
(which prefixes were expanded) or what the search returned.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tts_bench.calls import CallLayer
from tts_bench.config import ConfigError, compose
from tts_bench.engines import make_engine
from tts_bench.store import GenerationStore, ScoreStore
from tts_bench.strategies import AnswerReader, StrategyProblem, make_strategy
from tts_bench.verifiers import Score, ScoreLayer, VerifierIdentity

Q = "Solve the puzzle Q."


class TableVerifier:
    """Scores each step by its text (a table); counts the requests it saw."""

    name, kind = "table", "prm"

    def __init__(self, table: dict[str, float]):
        self.table = table
        self.seen = 0

    def identity(self):
        return VerifierIdentity(self.name, self.kind, "table", json.dumps(self.table, sort_keys=True), {})

    def score(self, requests):
        self.seen += len(requests)
        yield [(i, Score([self.table.get(s.split()[0], 0.0) for s in r.steps], input_tokens=len(r.steps)))
               for i, r in enumerate(requests)]

    def close(self):
        pass


def _search(tmp_path, name, tree, table, *over, n=4):
    """Run strategy ``name`` on one problem; returns (trajectories, engine, strategy, verifier)."""
    rules = [{"match": k, "texts": v} for k, v in tree.items()]
    script = tmp_path / "tree.jsonl"
    script.write_text("".join(json.dumps(r) + "\n" for r in rules))
    cfg = compose([f"strategy={name}", "engine=scripted", f"engine.script={script}", f"budget.n={n}",
                   "verifier=qwen2.5-math-prm", f"store_dir={tmp_path}/store", *over])
    engine = make_engine(cfg.engine, cfg.model)
    verifier = TableVerifier(table)
    scorer = ScoreLayer(verifier, ScoreStore(tmp_path / "store"), dataset="t")
    strat = make_strategy(cfg, AnswerReader("number"), scorer=scorer)
    layer = CallLayer(engine, GenerationStore(tmp_path / "store"), base_seed=0, dataset="t", batch_size=8)
    from tts_bench.engines.base import Message

    out = strat.run([StrategyProblem("p", (Message("user", Q),))], layer)
    return out, engine, strat, verifier


def expanded(engine) -> list[str]:
    """The prefixes the engine was asked to continue, one per sample, in order."""
    return [r.prefix for r in engine.requests for _ in r.sample_indices]


def done(t) -> bool:
    return bool(t.extra.get("completion"))


# Beam search, N = 4, M = 2: the root's 4 children are scored, the top 2 (a1, a3) go on.
BEAM_TREE = {
    "a1\n\nb11\n\n": ["c111 <eos>", "c112 <eos>"],
    "a3\n\nb31\n\n": ["c311 <eos>", "c312 <eos>"],
    "a1\n\n": ["b11\n\n", "b12 <eos>"],
    "a3\n\n": ["b31\n\n", "b32\n\n"],
    Q: ["a1\n\n", "a2\n\n", "a3\n\n", "a4\n\n"],
}
BEAM_SCORES = {"a1": 0.9, "a2": 0.2, "a3": 0.8, "a4": 0.1, "b11": 0.5, "b12": 0.95, "b31": 0.7,
               "b32": 0.3, "c111": 0.4, "c112": 0.6, "c311": 0.9, "c312": 0.1}


def test_beam_search_keeps_exactly_the_top_n_over_m(tmp_path):
    out, engine, _, _ = _search(tmp_path, "beam-search", BEAM_TREE, BEAM_SCORES, "strategy.beam_width=2")
    asked = expanded(engine)
    assert asked[:4] == [""] * 4  # the root: N children
    assert sorted(set(asked[4:8])) == ["a1\n\n", "a3\n\n"] and len(asked[4:8]) == 4  # top 2, 2 each
    # Step 2: b12 finished (1 of 4); alive b31 0.7, b11 0.5, b32 0.3: the top ceil(3/2) = 2 go on,
    # with 3 children at most (3 completions left).
    rest = asked[8:]
    assert len(rest) == 3 and set(rest) == {"a3\n\nb31\n\n", "a1\n\nb11\n\n"}
    texts = sorted(t.text for t in out if done(t))
    assert len(texts) <= 4 and "a1\n\nb12" in texts
    assert all(t.text.rstrip().endswith(("b12", "c111", "c112", "c311", "c312")) for t in out if done(t))


def test_unfinished_beams_are_never_returned(tmp_path):
    tree = {"x\n\n": ["y\n\n"], Q: ["x\n\n"]}
    out, _, _, _ = _search(tmp_path, "beam-search", tree, {"x": 0.5, "y": 0.5}, "strategy.beam_width=2",
                           "strategy.max_steps=3", n=2)
    assert len(out) == 1 and not done(out[0]) and out[0].text == ""


@pytest.mark.parametrize("name", ["beam-search", "dvts", "particle-filter", "rebase", "best-first"])
def test_never_more_than_n_completions(tmp_path, name):
    tree = {Q: [f"s{i} <eos>" for i in range(16)]}  # every child finishes at once
    out, _, _, _ = _search(tmp_path, name, tree, {f"s{i}": i / 16 for i in range(16)},
                           "strategy.beam_width=2", n=4)
    assert 1 <= sum(map(done, out)) <= 4


def test_dvts_subtrees_stay_independent(tmp_path):
    tree = {"L\n\n": ["L1 <eos>", "L2 <eos>"], "R\n\n": ["R1 <eos>", "R2 <eos>"],
            Q: ["L\n\n", "l\n\n", "R\n\n", "r\n\n"]}
    scores = {"L": 0.9, "l": 0.1, "R": 0.2, "r": 0.1, "L1": 0.3, "L2": 0.8, "R1": 0.6, "R2": 0.4}
    out, engine, _, _ = _search(tmp_path, "dvts", tree, scores, "strategy.beam_width=2")
    asked = expanded(engine)
    # Two subtrees: root children 0,1 (L, l) and 2,3 (R, r); each keeps its own best: L and R,
    # though l (0.1) < R (0.2) would lose to R in one shared beam.
    assert asked[:4] == [""] * 4
    assert asked[4:] == ["L\n\n", "L\n\n", "R\n\n", "R\n\n"]
    assert sorted(t.text for t in out) == ["L\n\nL2", "R\n\nR1"]


def test_rebase_allocates_as_the_worked_example():
    from tts_bench.strategies.rebase import allocate

    assert allocate([0.9, 0.5, 0.1], 8, 0.2) == [7, 1, 0]
    assert allocate([0.5, 0.5], 4, 0.2) == [2, 2]
    assert sum(allocate([0.3, 0.2, 0.1, 0.05], 3, 0.2)) == 3


def test_rebase_expands_by_its_allocation(tmp_path):
    tree = {"a\n\n": [f"a{i} <eos>" for i in range(8)], "b\n\n": [f"b{i} <eos>" for i in range(8)],
            "c\n\n": [f"c{i} <eos>" for i in range(8)], Q: ["a\n\n", "b\n\n", "c\n\n", "d <eos>"]}
    scores = {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.0} | {f"{x}{i}": 0.5 for x in "abc" for i in range(8)}
    out, engine, _, _ = _search(tmp_path, "rebase", tree, scores, n=4)
    asked = expanded(engine)[4:]
    # d finished: W = 3 shared among a, b, c by ceil(3 softmax(s / 0.2)) = [3, 1, 1], trimmed from
    # the lowest (c, then b) to [3, 0, 0].
    assert asked == ["a\n\n"] * 3
    assert sum(map(done, out)) == 4


def test_best_first_pops_in_score_order(tmp_path):
    tree = {"a\n\ny\n\n": ["z <eos>", "w <eos>"], "a\n\n": ["x\n\n", "y\n\n"], Q: ["a\n\n", "b\n\n"]}
    scores = {"a": 0.6, "b": 0.5, "x": 0.4, "y": 0.55, "z": 0.9, "w": 0.3}
    out, engine, strat, _ = _search(tmp_path, "best-first", tree, scores, "strategy.beam_width=2")
    # a (0.6) beats b (0.5); then y (0.55) beats b and x (0.4); then y's child z (0.9), finished.
    assert [n.text for n in strat.popped] == ["a\n\n", "a\n\ny\n\n", "a\n\ny\n\nz"]
    assert expanded(engine) == ["", "", "a\n\n", "a\n\n", "a\n\ny\n\n", "a\n\ny\n\n"]
    assert [t.text for t in out] == ["a\n\ny\n\nz"]


def test_best_first_stops_at_the_first_finished(tmp_path):
    tree = {"a\n\n": ["done <eos>", "more\n\n"], Q: ["a\n\n", "b\n\n"]}
    scores = {"a": 0.9, "b": 0.1, "done": 0.8, "more": 0.7}
    out, _, strat, _ = _search(tmp_path, "best-first", tree, scores, "strategy.beam_width=2")
    assert [t.text for t in out] == ["a\n\ndone"] and strat.popped[-1].finished


def test_particle_resampling_frequencies_match_the_weights():
    from tts_bench.strategies.particle_filter import logit_weights, resample_probs

    r = [0.9, 0.6, 0.3]
    p = resample_probs(logit_weights(r))
    assert p == pytest.approx([0.824, 0.137, 0.039], abs=1e-3)  # metrics.md section 11
    N, trials = 3, 4000
    counts = np.zeros(3)
    for seed in range(trials):
        counts += np.bincount(np.random.default_rng(seed).choice(N, size=N, p=p), minlength=3)
    draws = N * trials
    for i in range(3):  # a 99.99% binomial interval (normal approximation) around each weight
        half = 3.9 * math.sqrt(draws * p[i] * (1 - p[i]))
        assert abs(counts[i] - draws * p[i]) < half


def test_particle_filter_finished_particles_stay_finished(tmp_path):
    tree = {"a\n\n": ["b\n\n"], "a\n\nb\n\n": ["c <eos>"], Q: ["done <eos>", "a\n\n", "a\n\n", "a\n\n"]}
    scores = {"done": 0.99, "a": 0.01, "b": 0.5, "c": 0.5}
    out, engine, strat, _ = _search(tmp_path, "particle-filter", tree, scores, n=4)
    asked = expanded(engine)
    # After round 1 the finished particle (weight logit(0.99)) takes nearly all the mass;
    # resampled copies of it are never expanded again.
    assert "done <eos>" not in "".join(asked) and all("done" not in a for a in asked)
    texts = [t.text for t in out if done(t)]
    assert texts[0] == "done"


def test_particle_filter_ess_mode_resamples_only_below_the_threshold(tmp_path):
    from tts_bench.strategies.particle_filter import systematic

    idx = systematic(np.array([0.5, 0.25, 0.25]), 4, np.random.default_rng(0))
    assert sorted(idx.tolist()) in ([0, 0, 1, 2],)
    tree = {Q: ["a\n\n"] * 4, "a\n\n": ["b <eos>"]}
    out, _, _, _ = _search(tmp_path, "particle-filter", tree, {"a": 0.5, "b": 0.5},
                           "strategy.ess_threshold=0.5", n=4)
    assert sum(map(done, out)) >= 1


def test_search_needs_a_verifier_and_divisible_beams():
    with pytest.raises(ConfigError, match="asks a verifier which partial solutions to keep"):
        compose(["strategy=beam-search", "engine=scripted"])
    with pytest.raises(ConfigError, match="every N in \\[6\\] must be a multiple of strategy.beam_width=4"):
        compose(["strategy=beam-search", "engine=scripted", "verifier=genrm", "budget.n=6"])


def test_tree_cost_counts_every_node(tmp_path):
    out, engine, _, verifier = _search(tmp_path, "beam-search", BEAM_TREE, BEAM_SCORES,
                                       "strategy.beam_width=2")
    t = out[0].extra
    assert t["tree_policy_calls"] == len(expanded(engine))
    assert t["tree_verifier_calls"] == verifier.seen == t["tree_policy_calls"]
    assert t["tree_prefix_tokens"] > 0  # later steps re-read their prefix
    assert all(o.extra["tree_policy_calls"] == t["tree_policy_calls"] for o in out)


# ----------------------------------------------------------------- through the runner


def _pipeline(tmp_path, *over):
    from tts_bench.runner import run_experiment

    script = tmp_path / "s.jsonl"
    rows = [{"match": "Is the answer correct", "texts": ["Yes <eos>", "No <eos>"]},
            {"match": "\n\nso", "texts": ["the answer is 4 <eos>", "the answer is 5 <eos>"]},
            {"match": "What is", "texts": ["We add.\n\nso", "We guess.\n\nso"]}]
    script.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose(["strategy=beam-search", "engine=scripted", f"engine.script={script}", "verifier=genrm",
                   "dataset.size=3", "budget.n=4", "strategy.beam_width=2", "plot=false",
                   f"store_dir={tmp_path}/store", f"runs_dir={tmp_path}/runs", *over])
    return run_experiment(cfg, progress=False)


def test_a_search_run_scores_once_and_reruns_from_the_store(tmp_path):
    import pandas as pd

    first = _pipeline(tmp_path)
    assert first.complete and first.gen.generated > 0
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["scoring"]["scored"] == 0  # the final scoring reads the search's own scores
    table = pd.read_csv(first.run_dir / "analysis" / "search.csv")
    assert table["n"].tolist() == [4] and table["mean_verifier_calls"].iloc[0] > 0
    assert {"bon@k", "weighted@k"} <= set(pd.read_csv(first.run_dir / "metrics.csv")["metric"])
    again = _pipeline(tmp_path)
    assert again.gen.generated == 0
    m2 = json.loads((again.run_dir / "manifest.json").read_text())
    assert m2["scoring"]["scored"] == 0 and m2["scoring"]["verifier_calls"] == 0
    assert pd.read_parquet(first.run_dir / "trajectories.parquet")["text"].tolist() == \
        pd.read_parquet(again.run_dir / "trajectories.parquet")["text"].tolist()


def test_search_strategies_compose_with_the_yaml_defaults():
    for name in ("beam-search", "dvts", "particle-filter", "rebase", "best-first"):
        cfg = compose([f"strategy={name}", "verifier=genrm", "budget.n=8"])
        assert cfg.strategy.name == name and cfg.strategy.step_delimiter == "\n\n"
    assert Path(__file__).exists()


# ----------------------------------------------------------------- the embedded model, killed


@pytest.mark.model
def test_embedded_search_killed_and_resumed_generates_and_scores_nothing_twice(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    pytest.importorskip("llama_cpp")
    repo = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "tts_bench", "run", "--no-progress", "strategy=beam-search",
            "verifier=genrm", "verifier.verifications=1", "budget.n=2", "strategy.beam_width=2",
            "dataset.size=2", "strategy.max_steps=3", "strategy.max_tokens=24", "plot=false",
            f"store_dir={tmp_path}/store", f"runs_dir={tmp_path}/runs"]
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    scores = tmp_path / "store" / "scores"
    deadline = time.time() + 600
    from tts_bench.store import ScoreStore

    def scored():  # journaled or rolled into shards
        st = ScoreStore(tmp_path / "store")
        return sum(len(st.existing_keys(fp)) for fp in st.partitions())

    while time.time() < deadline and scored() < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert scored(), "the kill came before any score was stored"
    rerun = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr

    def rows_and_keys(folder):
        assert not list(folder.glob("*/journal-*.log"))  # the rerun rolled the killed run's journal
        keys = [k for p in folder.glob("*/part-*.parquet") for k in pq.read_table(p, columns=["key"])["key"]
                .to_pylist()]
        return len(keys), len(set(keys))

    for folder in (tmp_path / "store" / "generations", scores):
        rows, distinct = rows_and_keys(folder)
        assert rows == distinct > 0  # nothing generated or scored twice
    again = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    (run,) = list((tmp_path / "runs").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    last = manifest["invocations"][-1]
    assert last["generation"]["generated"] == 0
    assert last["search_scoring"]["scored"] == 0 and last["search_scoring"]["verifier_calls"] == 0
    assert manifest["scoring"]["scored"] == 0


def test_search_tables_by_hand():
    import pandas as pd

    from tts_bench.metrics.search import search_cost, search_table

    tree = {"tree_policy_calls": 4, "tree_read_tokens": 400, "tree_prefix_tokens": 100,
            "tree_completion_tokens": 80, "tree_verifier_calls": 4, "tree_verifier_input_tokens": 200,
            "tree_verifier_output_tokens": 0}
    rows = [  # p1: the best-scored completion (0.9) is wrong, the vote (A, A vs B) is right
        {"problem_id": "p1", "level": 4, "completion": True, "search_score": 0.9, "answer_class": "B",
         "correct": False},
        {"problem_id": "p1", "level": 4, "completion": True, "search_score": 0.5, "answer_class": "A",
         "correct": True},
        {"problem_id": "p1", "level": 4, "completion": True, "search_score": 0.3, "answer_class": "A",
         "correct": True},
        # p2: no completion at all: 0 everywhere
        {"problem_id": "p2", "level": 4, "completion": False, "search_score": float("nan"),
         "answer_class": None, "correct": False},
    ]
    g = pd.DataFrame([r | tree for r in rows])
    t = search_table(g, n_boot=0).iloc[0]
    assert (t["search_answer"], t["majority"], t["weighted"]) == (0.0, 0.5, 0.0)  # weighted: B 0.9 > A 0.8
    assert t["mean_completions"] == 1.5 and t["prefix_share_of_read"] == 0.25
    shape = dict(n_params=1000, n_layers=2, d_model=8, n_heads=2, n_kv_heads=1, head_dim=4, vocab_size=10,
                 source="t")
    c = search_cost(g, "beam-search", shape, shape).iloc[0]
    assert c["accuracy"] == 0.0 and c["tokens"] == 80 and c["verifier_input_tokens"] == 200
    assert c["total_flops"] == pytest.approx(c["flops"] + c["verifier_flops"]) and c["verifier_flops"] > 0


def test_equal_compute_and_compute_optimal_by_hand():
    import pandas as pd

    from tts_bench.metrics.allocation import compute_optimal_across_runs, equal_compute_table

    points = pd.DataFrame([
        {"run": "small+prm", "metric": "bon@k", "k": 1, "value": 0.3, "flops": 10.0},
        {"run": "small+prm", "metric": "bon@k", "k": 4, "value": 0.6, "flops": 40.0},
        {"run": "big", "metric": "maj@k", "k": 1, "value": 0.5, "flops": 40.0},
        {"run": "big", "metric": "maj@k", "k": 2, "value": 0.55, "flops": 80.0},
    ])
    labels = {"small+prm": {"policy": "1B", "verifier": "prm"}, "big": {"policy": "8B", "verifier": "none"}}
    t = equal_compute_table(points, labels, num=4)  # budgets 10, 20, 40, 80
    b10 = t[t["budget"].round(6) == 10.0].set_index("run")
    assert b10.loc["small+prm", "accuracy"] == 0.3 and "big" not in b10.index
    b40 = t[(t["budget"].round(6) == 40.0)].set_index("run")
    assert b40.loc["small+prm", "accuracy"] == 0.6 and b40.loc["big", "accuracy"] == 0.5
    assert b40.loc["small+prm", "policy"] == "1B"
    # Compute-optimal: easy problems (bin 1) favour family A at any budget, hard ones (bin 2) B,
    # which only fits from cost 20 on; at cost 10 only A fits.
    rows = []
    for pid, level in [("e1", 1), ("e2", 1), ("h1", 2), ("h2", 2)]:
        rows.append({"family": "A", "k": 1, "problem_id": pid, "value": 1.0 if level == 1 else 0.0,
                     "cost": 10.0})
        rows.append({"family": "B", "k": 1, "problem_id": pid, "value": 0.5 if level == 1 else 1.0,
                     "cost": 20.0})
    out = compute_optimal_across_runs(pd.DataFrame(rows), pd.Series({"e1": 1, "e2": 1, "h1": 2, "h2": 2}),
                                      num=2)
    got = {(r.bin, r.budget): (r.oracle_strategy, r.cv_value) for r in out.itertuples()}
    assert got[(1, 10.0)] == ("A", 1.0) and got[(2, 10.0)] == ("A", 0.0)
    assert got[(1, 20.0)] == ("A", 1.0) and got[(2, 20.0)] == ("B", 1.0)
