"""Verifiers run by the harness: reward-model formats, genrm, the score store, `tts-bench score`.

Reward models are tiny random-weight transformers models built by the test
(tests/hf_tiny.py); every score is checked against the model's own forward
pass computed here, independently of the verifier's formatting code.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tts_bench.config import ConfigError, compose, with_verifier
from tts_bench.store import ScoreStore
from tts_bench.verifiers import Score, ScoreLayer, ScoreRequest, VerifierIdentity, aggregate, split_steps

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What is 2+3? Answer with just the number."
SOLUTIONS = [
    ("Step 1: 2 + 3 = 5", "The answer is 5."),
    ("We compute 12 * 7 = 84", "Then 84 / 2 = 42", "The final answer is \\boxed{42}."),
    ("x = 5",),
]


# ----------------------------------------------------------------- steps, aggregation


def test_split_steps_drops_empty_pieces_and_keeps_one_step_for_empty_text():
    assert split_steps("a\n\n\n\nb\n\n", "\n\n") == ("a", "b")
    assert split_steps("", "\n\n") == ("",)
    assert split_steps("one step", "\n\n") == ("one step",)


@pytest.mark.parametrize("how,expected", [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5),
                                          ("mean", (0.9 + 0.2 + 0.5) / 3)])
def test_aggregate_over_steps(how, expected):
    assert aggregate([0.9, 0.2, 0.5], how) == pytest.approx(expected)


# ----------------------------------------------------------------- the score layer


class CountingVerifier:
    """A fake verifier: score = 1 / (1 + len(step)) per step; counts what it scored; can fail."""

    name, kind = "counting", "prm"

    def __init__(self, fail_after_groups: int | None = None, batch: int = 2):
        self.scored = 0
        self.groups = 0
        self.fail_after_groups = fail_after_groups
        self.batch = batch

    def identity(self):
        return VerifierIdentity(self.name, self.kind, "fake", "w0", {"f": 1})

    def score(self, requests):
        for lo in range(0, len(requests), self.batch):
            if self.fail_after_groups is not None and self.groups >= self.fail_after_groups:
                raise RuntimeError("verifier crashed")
            group = [(i, Score([1 / (1 + len(s)) for s in requests[i].steps], input_tokens=10 * (i + 1)))
                     for i in range(lo, min(lo + self.batch, len(requests)))]
            self.scored += len(group)
            self.groups += 1
            yield group

    def close(self):
        pass


def _requests(n=5):
    return [ScoreRequest(f"k{i}", f"p{i % 2}", QUESTION, ("a" * i, "bb")) for i in range(n)]


def test_scores_are_stored_and_a_second_layer_scores_nothing(tmp_path):
    store = ScoreStore(tmp_path)
    first = CountingVerifier()
    got = ScoreLayer(first, store, dataset="t").score(_requests())
    assert first.scored == 5 and [s.step_scores[0] for s in got] == [1 / (1 + i) for i in range(5)]
    again = CountingVerifier()
    layer = ScoreLayer(again, ScoreStore(tmp_path), dataset="t")
    reread = layer.score(_requests())
    assert again.scored == 0 and layer.stats.cached == 5
    assert [s.step_scores for s in reread] == [s.step_scores for s in got]
    assert [s.input_tokens for s in reread] == [10 * (i + 1) for i in range(5)]


def test_a_crashed_scoring_pass_resumes_without_rescoring(tmp_path):
    with pytest.raises(RuntimeError):
        layer = ScoreLayer(CountingVerifier(fail_after_groups=2), ScoreStore(tmp_path), dataset="t")
        layer.score(_requests())
    rerun = CountingVerifier()
    ScoreLayer(rerun, ScoreStore(tmp_path), dataset="t").score(_requests())
    assert rerun.scored == 1  # two groups of two were written before the crash
    assert len(ScoreStore(tmp_path).read(rerun.identity().fingerprint)) == 5


def test_the_key_covers_step_boundaries_question_and_verifier(tmp_path):
    layer = ScoreLayer(CountingVerifier(), ScoreStore(tmp_path), dataset="t")
    base = ScoreRequest("k", "p", QUESTION, ("ab", "c"))
    keys = {layer.key(base), layer.key(ScoreRequest("k", "p", QUESTION, ("a", "bc"))),
            layer.key(ScoreRequest("k", "p", "Another question", ("ab", "c"))),
            layer.key(ScoreRequest("k2", "p", QUESTION, ("ab", "c")))}
    assert len(keys) == 4


# ----------------------------------------------------------------- config


@pytest.mark.parametrize("override,message", [
    ("verifier.aggregate=median",
     "unknown verifier.aggregate 'median'. Valid choices: min, prod, last, mean"),
    ("verifier.batch_size=0", "verifier.batch_size must be at least 1, got 0"),
])
def test_bad_verifier_settings_fail_at_compose(override, message):
    with pytest.raises(ConfigError) as e:
        compose(["verifier=genrm", override])
    assert str(e.value) == message


def test_bad_reward_format_fails_at_compose():
    with pytest.raises(ConfigError, match="unknown verifier.readout 'logit'"):
        compose(["verifier=qwen2.5-math-prm", "verifier.readout=logit"])
    with pytest.raises(ConfigError, match="template=turns and verifier.score_at=turn go together"):
        compose(["verifier=rlhflow-prm", "verifier.score_at=separator", "verifier.step_suffix=x"])


def test_with_verifier_takes_only_verifier_overrides():
    cfg = compose([])
    assert with_verifier(cfg, ["verifier=genrm", "verifier.verifications=3"]).verifier.verifications == 3
    with pytest.raises(ConfigError, match="only verifier overrides apply to a finished run; drop budget.n=4"):
        with_verifier(cfg, ["verifier=genrm", "budget.n=4"])


def test_a_missing_reward_model_is_one_line_before_anything_loads(tmp_path):
    pytest.importorskip("transformers")
    from tts_bench.verifiers.reward_model import resolve_hf_path

    with pytest.raises(ConfigError, match="not a folder and not in the local Hugging Face cache"):
        resolve_hf_path(str(tmp_path / "nope" / "prm"), None)


# ----------------------------------------------------------------- reward models (tiny, random)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {
        "token": build_tiny_model(root / "prm", head="token", num_labels=2),
        "causal": build_tiny_model(root / "lm", head="causal"),
        "sequence": build_tiny_model(root / "orm", head="sequence", num_labels=1, arch="llama"),
    }


def _verifier(name: str, path: Path, *more: str):
    from tts_bench.verifiers.reward_model import RewardModelVerifier

    cfg = compose([f"verifier={name}", f"verifier.path={path}", "verifier.dtype=float32",
                   "verifier.device=cpu", "verifier.auto_class=null", "verifier.trust_remote_code=false",
                   "verifier.batch_size=2", *more])
    return RewardModelVerifier(cfg.verifier)


def _scores(verifier, solutions=SOLUTIONS):
    reqs = [ScoreRequest(f"k{i}", "p", QUESTION, steps) for i, steps in enumerate(solutions)]
    out = {}
    for group in verifier.score(reqs):
        out.update(group)
    return [out[i] for i in range(len(reqs))]


def test_qwen_prm_format_reads_the_positive_class_at_each_separator(tiny):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    v = _verifier("qwen2.5-math-prm", tiny["token"])
    got = _scores(v)
    tok = AutoTokenizer.from_pretrained(tiny["token"])
    model = AutoModelForTokenClassification.from_pretrained(tiny["token"]).eval()
    sep = tok.convert_tokens_to_ids("<extra_0>")
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    for steps, score in zip(SOLUTIONS, got):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
        ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0].softmax(-1)[:, 1]
        want = probs[ids[0] == sep].tolist()
        assert len(want) == len(steps)
        assert score.step_scores == pytest.approx(want, abs=1e-5)
        assert score.input_tokens == ids.shape[1]
    assert len({round(s, 6) for sc in got for s in sc.step_scores}) > 3  # real, varied scores


def test_math_shepherd_format_reads_plus_against_minus_at_each_step_tag(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    got = _scores(_verifier("math-shepherd", tiny["causal"]))
    tok = AutoTokenizer.from_pretrained(tiny["causal"])
    model = AutoModelForCausalLM.from_pretrained(tiny["causal"]).eval()
    tag = tok.encode("ки", add_special_tokens=False)[-1]
    plus, minus = tok.encode("+", add_special_tokens=False), tok.encode("-", add_special_tokens=False)
    assert len(plus) == len(minus) == 1
    for steps, score in zip(SOLUTIONS, got):
        text = QUESTION + " " + "\n".join(s + " ки" for s in steps)
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0][:, [plus[0], minus[0]]]
        want = logits.softmax(-1)[:, 0][ids[0] == tag].tolist()
        assert score.step_scores == pytest.approx(want, abs=1e-5) and len(want) == len(steps)


def test_rlhflow_format_reads_each_turn_where_the_assistant_replies(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    got = _scores(_verifier("rlhflow-prm", tiny["causal"]))
    tok = AutoTokenizer.from_pretrained(tiny["causal"])
    model = AutoModelForCausalLM.from_pretrained(tiny["causal"]).eval()
    plus, minus = tok.encode("+", add_special_tokens=False)[0], tok.encode("-", add_special_tokens=False)[0]
    for steps, score in zip(SOLUTIONS, got):
        conv = []
        for i, s in enumerate(steps):
            conv += [{"role": "user", "content": QUESTION + " " + s if i == 0 else s},
                     {"role": "assistant", "content": "+"}]
        want = []
        for i in range(len(steps)):
            head = tok.apply_chat_template(conv[: 2 * i + 1], tokenize=False, add_generation_prompt=True)
            ids = tok(head, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                last = model(input_ids=ids).logits[0, -1, [plus, minus]]
            want.append(float(last.softmax(-1)[0]))
        assert score.step_scores == pytest.approx(want, abs=1e-5)


def test_orm_scores_the_whole_chat_once_with_the_raw_head(tiny):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    solutions = [("The answer is 5.",), ("We compute 12 * 7 = 84, so the answer is \\boxed{42}.",)]
    got = _scores(_verifier("orm", tiny["sequence"]), solutions)
    tok = AutoTokenizer.from_pretrained(tiny["sequence"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny["sequence"]).eval()
    for (text,), score in zip(solutions, got):
        msgs = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": text}]
        ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = float(model(input_ids=ids).logits[0, 0])
        assert score.step_scores == pytest.approx([want], abs=1e-5)


def test_value_head_format_reads_sigmoid_of_the_head_at_each_step_end(tiny, tmp_path):
    import shutil

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "vh"
    shutil.copytree(tiny["causal"], folder)
    torch.manual_seed(1)
    w, b = torch.randn(1, 64), torch.randn(1)
    save_file({"v_head.summary.weight": w, "v_head.summary.bias": b}, str(folder / "value_head.safetensors"))
    steps = ("2 + 3 = 5", "so the answer is 5")
    (got,) = _scores(_verifier("skywork-prm", folder), [steps])
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModel.from_pretrained(folder).eval()
    text = QUESTION + "\n" + "".join(s + "\n" for s in steps)
    enc = tok(text, return_offsets_mapping=True, return_tensors="pt")
    ends = [len(QUESTION) + 1 + len(steps[0]), len(text) - 1]  # each step's "\n"
    pos = [next(i for i, (a, z) in enumerate(enc["offset_mapping"][0].tolist()) if a <= e < z) for e in ends]
    with torch.no_grad():
        h = base(input_ids=enc["input_ids"]).last_hidden_state[0]
    want = torch.sigmoid(h[pos] @ w.T + b)[:, 0].tolist()
    assert got.step_scores == pytest.approx(want, abs=1e-5)


def test_a_long_input_is_cut_and_its_late_steps_go_unscored(tiny):
    v = _verifier("qwen2.5-math-prm", tiny["token"], "verifier.max_length=150")
    (score,) = _scores(v, [tuple(f"Step {i}: we add {i} and {i} to get {2 * i}." for i in range(12))])
    assert 0 < len(score.step_scores) < 12 and v.truncated == 1


def test_verifier_identity_changes_with_format_not_with_batch_size(tiny):
    a = _verifier("qwen2.5-math-prm", tiny["token"]).identity()
    b = _verifier("qwen2.5-math-prm", tiny["token"], "verifier.batch_size=7").identity()
    c = _verifier("qwen2.5-math-prm", tiny["token"], "verifier.positive_index=0").identity()
    assert a.fingerprint == b.fingerprint != c.fingerprint


# ----------------------------------------------------------------- genrm with the scripted engine


def _scripted_run(tmp_path, texts, *extra):
    from tts_bench.runner import run_experiment

    script = tmp_path / "script.jsonl"
    rows = [{"match": "Is the answer correct", "texts": texts},
            {"match": "What is", "texts": ["The answer is 4.", "The answer is 5."]}]
    script.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose(["engine=scripted", f"engine.script={script}", "dataset.size=3", "budget.n=2",
                   "verifier=genrm", f"store_dir={tmp_path}/store", f"runs_dir={tmp_path}/runs",
                   "plot=false", *extra])
    return run_experiment(cfg, progress=False), cfg


def test_genrm_reads_p_yes_from_the_answer_tokens_logprob(tmp_path):
    from tts_bench.engines.scripted import word_logprob

    result, cfg = _scripted_run(tmp_path, ["Yes <eos>", "No <eos>"])
    scores = pd.read_parquet(result.run_dir / "scores.parquet")
    p_yes, p_no = math.exp(word_logprob("Yes")), 1 - math.exp(word_logprob("No"))
    # V = 2: verification 0 says Yes, 1 says No, for every solution.
    for vs, s in zip(scores["verifications"], scores["verifier_score"]):
        assert list(vs) == pytest.approx([p_yes, p_no], abs=1e-6)
        assert s == pytest.approx((p_yes + p_no) / 2, abs=1e-6)
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert {"bon@k", "weighted@k"} <= set(metrics["metric"])


def test_genrm_falls_back_to_the_text_then_to_no_verdict(tmp_path):
    result, _ = _scripted_run(tmp_path, ["Looks right, yes. <eos>", "Hmm. <eos>"])
    scores = pd.read_parquet(result.run_dir / "scores.parquet")
    for vs in scores["verifications"]:
        assert list(vs) == [1.0, 0.5]
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["scoring"]["sources"] == {"text": 6, "none": 6}


def test_genrm_on_an_engine_without_logprobs_fails_at_compose(monkeypatch):
    import dataclasses

    from tts_bench.engines.scripted import ScriptedEngine

    monkeypatch.setattr(ScriptedEngine, "capabilities",
                        dataclasses.replace(ScriptedEngine.capabilities, logprobs=False))
    with pytest.raises(ConfigError) as e:
        compose(["verifier=genrm", "engine=scripted"])
    assert str(e.value) == ("verifier=genrm reads P(Yes) from logprobs; engine=scripted returns none. "
                            "Use engine=llamacpp, engine=vllm or engine=openai")


def test_score_command_scores_a_finished_run_and_reuses_the_store(tmp_path):
    from typer.testing import CliRunner

    from tts_bench.cli import app

    result, cfg = _scripted_run(tmp_path, ["Yes <eos>"])
    run = str(result.run_dir)
    cli = CliRunner()
    out = cli.invoke(app, ["score", run, "verifier=genrm", "verifier.verifications=3", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "scored 6 samples with genrm (0 from the store)" in out.output
    again = cli.invoke(app, ["score", run, "verifier=genrm", "verifier.verifications=3", "--no-progress"])
    assert "scored 0 samples with genrm (6 from the store)" in again.output
    bad = cli.invoke(app, ["score", run])
    assert bad.exit_code == 2 and "name the verifier: tts-bench score RUN verifier=<name>" in bad.output


# ----------------------------------------------------------------- genrm on the embedded model


def _embedded_args(tmp_path):
    return ["dataset.size=3", "budget.n=2", f"store_dir={tmp_path}/store", f"runs_dir={tmp_path}/runs",
            "plot=false"]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tts_bench", *args], capture_output=True, text=True,
                          cwd=REPO, **kw)


@pytest.mark.model
def test_genrm_on_the_embedded_model_scores_stores_and_reuses(tmp_path):
    pytest.importorskip("llama_cpp")
    first = _cli("run", "--no-progress", "verifier=genrm", *_embedded_args(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "scored 6 samples with genrm (0 from the store)" in first.stdout
    (run,) = list((tmp_path / "runs").iterdir())
    scores = pd.read_parquet(run / "scores.parquet")
    assert len(scores) == 6 and scores["verifier_score"].between(0, 1).all()
    assert all(len(v) == 2 for v in scores["verifications"])
    again = _cli("run", "--no-progress", "verifier=genrm", *_embedded_args(tmp_path))
    assert "scored 0 samples with genrm (6 from the store)" in again.stdout


@pytest.mark.model
def test_genrm_killed_mid_scoring_resumes_without_scoring_twice(tmp_path):
    pytest.importorskip("llama_cpp")
    gen = _cli("run", "--no-progress", "--generate-only", *_embedded_args(tmp_path))
    assert gen.returncode == 0, gen.stderr
    (run,) = list((tmp_path / "runs").iterdir())
    scores = tmp_path / "store" / "scores"
    args = ["score", str(run), "verifier=genrm", "verifier.batch_size=1", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "tts_bench", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    def stored() -> int:  # scores land in the scoring process's journal, read like shards
        st = ScoreStore(tmp_path / "store")
        return sum(len(st.existing_keys(fp)) for fp in st.partitions())

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and stored() < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = stored()
    assert 2 <= before < 6, "the kill came too late to interrupt scoring"
    rerun = _cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"scored {6 - before} samples with genrm ({before} from the store)" in rerun.stdout
    (fp,) = [p.name for p in scores.iterdir()]
    table = ScoreStore(tmp_path / "store").read(fp)
    rows = sum(len(pd.read_parquet(p)) for p in scores.glob("*/part-*.parquet"))
    assert rows == len(table) == 6  # nothing scored twice


# ----------------------------------------------------------------- cost and solve-vs-verify


def _graded(verifications, correct, classes, out_tokens=2, completion=10):
    rows = []
    for p, (vs, cs, cl) in enumerate(zip(verifications, correct, classes)):
        for i, (v, c, a) in enumerate(zip(vs, cs, cl)):
            rows.append({"problem_id": f"p{p}", "sample_index": i, "verifications": v, "correct": c,
                         "answer_class": a, "verifier_output_tokens": out_tokens * len(v),
                         "verifier_input_tokens": 100 * len(v), "completion_tokens": completion})
    return pd.DataFrame(rows)


def test_solve_vs_verify_by_hand():
    from tts_bench.metrics.verification import solve_vs_verify

    # One problem, 4 solutions (A right; B, B, C wrong), V = 2 verifications each.
    g = _graded([[[0.9, 0.1], [0.8, 0.8], [0.2, 0.4], [0.1, 0.1]]], [[True, False, False, False]],
                [["A", "B", "B", "C"]], out_tokens=5, completion=10)
    t = solve_vs_verify(g, n_boot=0).set_index(["method", "solutions"])
    assert t["lambda"].iloc[0] == pytest.approx(0.5)  # 5 tokens per verification / 10 per solution
    # V=1 ranks by the first verification: A (0.9) best: BoN@1 = 1/4, BoN@4 = 1.
    assert t.loc[("genrm V=1", 1), "accuracy"] == pytest.approx(0.25)
    assert t.loc[("genrm V=1", 4), "accuracy"] == pytest.approx(1.0)
    # V=2 averages: A 0.5, B 0.8, B 0.3, C 0.1 -> B first: BoN@4 = 0; BoN@2 = P(A beats the other) ...
    assert t.loc[("genrm V=2", 4), "accuracy"] == pytest.approx(0.0)
    # BoN@2 over pairs: A wins against {B(0.3), C}: 2 of 6 pairs -> 1/3.
    assert t.loc[("genrm V=2", 2), "accuracy"] == pytest.approx(1 / 3)
    assert t.loc[("genrm V=2", 2), "compute"] == pytest.approx(2 * (1 + 0.5 * 2))
    # Self-consistency at C = 4: majority over all four is B: 0; at C = 1: 1/4.
    assert t.loc[("self-consistency", 4), "accuracy"] == pytest.approx(0.0)
    assert t.loc[("self-consistency", 1), "accuracy"] == pytest.approx(0.25)
    assert set(t.index.get_level_values(0)) == {"genrm V=1", "genrm V=2", "self-consistency"}


def test_verifier_cost_is_charged_to_verified_metrics_with_the_verifiers_shape():
    from tts_bench.metrics.cost import prefill_flops
    from tts_bench.metrics.model_shape import ModelShape
    from tts_bench.metrics.verification import verifier_cost

    shape = dict(n_params=1_000_000, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16,
                 vocab_size=100, source="test")
    g = pd.DataFrame({"problem_id": ["a", "a", "b", "b"], "verifier_input_tokens": [100, 300, 200, 200],
                      "verifier_output_tokens": [0, 0, 0, 0]})
    cost = pd.DataFrame({"metric": ["pass@k", "bon@k", "bon@k"], "k": [2, 1, 2], "tokens": [20.0, 10, 20],
                         "flops": [1.0, 2.0, 3.0]})
    out = verifier_cost(cost, g, shape).set_index(["metric", "k"])
    assert out.loc[("pass@k", 2), "verifier_input_tokens"] == 0
    assert out.loc[("bon@k", 1), "verifier_input_tokens"] == pytest.approx(200)
    assert out.loc[("bon@k", 2), "verifier_input_tokens"] == pytest.approx(400)
    s = ModelShape(**shape)
    per = prefill_flops(s, pd.Series([100, 300, 200, 200]).to_numpy(float))
    want = ((per[0] + per[1]) / 2 + (per[2] + per[3]) / 2) / 2 * 2
    assert out.loc[("bon@k", 2), "verifier_flops"] == pytest.approx(want)
    assert out.loc[("bon@k", 2), "total_flops"] == pytest.approx(want + 3.0)


# ----------------------------------------------------------------- a reward model behind HTTP


@pytest.fixture
def pooling_server(tiny):
    """A loopback server answering vLLM's /pooling as `vllm serve <prm> --task reward` does for
    Qwen2.5-Math-PRM: the chat template applied to the messages, one [P(-), P(+)] row per step tag."""
    import http.server
    import threading

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["token"])
    model = AutoModelForTokenClassification.from_pretrained(tiny["token"]).eval()
    sep = tok.convert_tokens_to_ids("<extra_0>")
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            text = tok.apply_chat_template(body["messages"], tokenize=False)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                probs = model(input_ids=ids).logits[0].softmax(-1)
            rows = probs[ids[0] == sep].tolist()
            reply = json.dumps({"data": [{"index": 0, "object": "pooling", "data": rows}],
                                "usage": {"prompt_tokens": int(ids.shape[1])}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_http_reward_model_scores_equal_the_local_ones(tiny, pooling_server):
    from tts_bench.verifiers.http import HTTPRewardVerifier

    url, seen = pooling_server
    cfg = compose(["verifier=http-prm", f"verifier.base_url={url}", "verifier.served_model=tiny-prm"])
    remote = _scores(HTTPRewardVerifier(cfg.verifier))
    local = _scores(_verifier("qwen2.5-math-prm", tiny["token"]))
    for r, loc in zip(remote, local):
        assert r.step_scores == pytest.approx(loc.step_scores, abs=1e-5)
        assert r.input_tokens == loc.input_tokens
    assert seen[0]["model"] == "tiny-prm" and seen[0]["messages"][-1]["role"] == "assistant"


def test_http_reward_model_errors_are_one_line(tiny, pooling_server):
    from tts_bench.verifiers import VerifierError
    from tts_bench.verifiers.http import HTTPRewardVerifier

    url, _ = pooling_server
    cfg = compose(["verifier=http-prm", f"verifier.base_url={url}", "verifier.served_model=m",
                   "verifier.step_suffix=\\n"])  # the server finds no <extra_0>: 0 rows for 2 steps
    with pytest.raises(VerifierError, match="returned 0 rows for 2 steps; serve the PRM with step pooling"):
        _scores(HTTPRewardVerifier(cfg.verifier), [("a", "b")])
    dead = compose(["verifier=http-prm", "verifier.base_url=http://127.0.0.1:9", "verifier.max_retries=0",
                    "verifier.served_model=m"])
    with pytest.raises(VerifierError) as e:
        _scores(HTTPRewardVerifier(dead.verifier), [("a",)])
    assert str(e.value) == ("reward model server http://127.0.0.1:9/pooling unreachable (ConnectError); "
                            "start it or fix verifier.base_url")
