"""GPU check of engine=transformers: harness overhead against raw ``model.generate``, and PRM scoring speed.

Needs only torch and transformers (and the repository on the path: nothing to
install, nothing downloaded). A Qwen2.5-1.5B-shaped model (28 layers, width
1536, 12 query / 2 KV heads, vocabulary 151,936, tied embeddings) gets random
weights initialised in place on the device in bf16; the tokenizer is the tiny
byte-level BPE that tests/hf_tiny.py builds locally (the model's extra
vocabulary rows decode to nothing, which changes no timing).

    python scripts/gpu_check_transformers.py                       # cuda, the 1.5B shape
    python scripts/gpu_check_transformers.py --device cpu --small  # the same code on CPU, a small model

Generation: the same left-padded batches of chat prompts, greedy, every
sample forced to exactly --new-tokens tokens (engine: ignore_eos; raw:
min_new_tokens), timed alternately --repeats times after one warm-up each;
the table gives the median tokens/s of both and the engine's overhead
(target: at most 5%). On CPU the clock is the process's CPU time (see
``_clock``). Reward scoring (:func:`bench_reward_scoring`): a
Qwen2-shaped AutoModelForTokenClassification (2 labels, the PRM head) scoring
batches of solutions whose steps are joined by ``<extra_0>``, reading P(label
1) at every separator: tokens/s and solutions/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

QUESTIONS = [
    "What is 2+3? Answer with just the number.",
    "Name the capital of France.",
    "Please reason step by step, and put your final answer within \\boxed{}. What is 12 * 7?",
    "Let x be the number of apples. If 3x + 4 = 19, what is x?",
    "Is the answer correct (Yes/No)? We compute 6 * 7 = 42.",
    "Compute \\frac{1}{2} + \\frac{1}{3} and simplify.",
]


@dataclass(frozen=True)
class Shape:
    """The model geometry: the Qwen2.5-1.5B numbers, or a small one for CPU."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int | None  # None: the tokenizer's size
    max_positions: int


QWEN25_15B = Shape(1536, 8960, 28, 12, 2, 151936, 32768)
SMALL = Shape(256, 688, 4, 4, 2, None, 4096)


def qwen2_config(shape: Shape, vocab: int, tokenizer, **extra):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=shape.vocab_size or vocab, hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_positions, tie_word_embeddings=True, rope_theta=1e6,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        **extra)


def build_in_place(auto_class, config, device: str, dtype):
    """Random weights allocated and initialised directly on ``device`` (no checkpoint, no copy)."""
    import torch
    import transformers

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    torch.manual_seed(0)
    with torch.device(device):
        model = auto_class.from_config(config, **{dtype_kw: dtype})
    return model.eval()


def chat_prompts(tokenizer, n: int) -> list[str]:
    """n rendered chat prompts of varied length (left padding is exercised)."""
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)] + (" Explain." * (i % 4))
        out.append(tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                 add_generation_prompt=True))
    return out


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(device: str) -> float:
    """Wall time on a GPU; this process's CPU time on CPU, which other processes on a shared
    machine disturb far less (with torch on one thread it equals the wall time of an idle machine)."""
    return time.perf_counter() if device.startswith("cuda") else time.process_time()


def time_raw_generate(model, tokenizer, prompts: list[str], new_tokens: int, batch_size: int,
                      device: str) -> float:
    """Seconds for raw ``model.generate`` over the prompts in batches (greedy, fixed length)."""
    import torch

    tokenizer.padding_side = "left"
    _sync(torch, device)
    t0 = _clock(device)
    for lo in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[lo: lo + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        with torch.inference_mode():
            model.generate(**enc, do_sample=False, temperature=None, top_p=None, top_k=None,
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           pad_token_id=tokenizer.pad_token_id)
    _sync(torch, device)
    return _clock(device) - t0


def time_engine(engine, prompts: list[str], new_tokens: int, device: str) -> float:
    """Seconds for engine=transformers over the same prompts (greedy, ignore_eos, fixed length)."""
    import torch

    from tts_bench.engines.base import GenerationRequest, SamplingParams

    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=new_tokens, ignore_eos=True)
    reqs = [GenerationRequest(i, p, (), params, (0,), (i,)) for i, p in enumerate(prompts)]
    _sync(torch, device)
    t0 = _clock(device)
    done = [c for group in engine.generate(reqs) for c in group]
    _sync(torch, device)
    elapsed = _clock(device) - t0
    assert all(c.completion_tokens == new_tokens for c in done), "a sample ended early"
    return elapsed


def bench_generation(model, tokenizer, *, device: str, prompts: int, new_tokens: int, batch_size: int,
                     repeats: int, context_length: int) -> dict:
    """Median tokens/s of raw model.generate and of engine=transformers on the same batches."""
    from tts_bench.config import ModelConfig, TransformersEngineConfig
    from tts_bench.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine.from_loaded(
        model, tokenizer, TransformersEngineConfig(device=device, batch_size=batch_size),
        ModelConfig(name="random-in-place", path="in-memory", context_length=context_length),
        weights_hash="random-in-place")
    texts = chat_prompts(tokenizer, prompts)
    time_raw_generate(model, tokenizer, texts[:batch_size], 4, batch_size, device)  # warm-up
    time_engine(engine, texts[:batch_size], 4, device)
    raw, eng = [], []
    for r in range(repeats):  # alternate the order so drift hits both alike
        if r % 2 == 0:
            raw.append(time_raw_generate(model, tokenizer, texts, new_tokens, batch_size, device))
            eng.append(time_engine(engine, texts, new_tokens, device))
        else:
            eng.append(time_engine(engine, texts, new_tokens, device))
            raw.append(time_raw_generate(model, tokenizer, texts, new_tokens, batch_size, device))
    tokens = prompts * new_tokens
    raw_s, eng_s = statistics.median(raw), statistics.median(eng)
    return {"prompts": prompts, "batch": batch_size, "new_tokens": new_tokens,
            "raw_tok_s": tokens / raw_s, "engine_tok_s": tokens / eng_s,
            "overhead_pct": 100.0 * (eng_s - raw_s) / raw_s}


# ---------------------------------------------------------------------- reward-model scoring


def step_joined_solutions(n: int, steps: int) -> list[str]:
    """Solutions of ``steps`` steps, each step followed by the PRM separator (Qwen2.5-Math-PRM's format)."""
    from hf_tiny import STEP_SEPARATOR

    out = []
    for i in range(n):
        body = [f"Step {s + 1}: we compute {i + s} * 7 = {(i + s) * 7} and check it again."
                for s in range(steps)]
        out.append("".join(step + STEP_SEPARATOR for step in body))
    return out


def bench_reward_scoring(tokenizer, shape: Shape, *, device: str, dtype, solutions: int, steps: int,
                         batch_size: int, repeats: int) -> dict:
    """Scoring throughput of a Qwen2-shaped token-classification PRM: tokens/s and solutions/s.

    Each batch is right-padded, run through one forward pass, and P(label 1)
    read at every ``<extra_0>`` position (the per-step scores a PRM verifier
    returns); the scores are moved to the CPU, as a verifier storing them would.
    """
    import torch
    from hf_tiny import STEP_SEPARATOR
    from transformers import AutoModelForTokenClassification

    sep = tokenizer.convert_tokens_to_ids(STEP_SEPARATOR)
    config = qwen2_config(shape, len(tokenizer), tokenizer, num_labels=2)
    model = build_in_place(AutoModelForTokenClassification, config, device, dtype)
    texts = step_joined_solutions(solutions, steps)
    tokenizer.padding_side = "right"
    batches = [tokenizer(texts[lo: lo + batch_size], return_tensors="pt", padding=True,
                         add_special_tokens=False).to(device) for lo in range(0, len(texts), batch_size)]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    def score_all() -> tuple[float, int]:
        _sync(torch, device)
        t0 = _clock(device)
        n_scores = 0
        with torch.inference_mode():
            for b in batches:
                probs = model(**b).logits.float().softmax(-1)[..., 1]
                at = (b["input_ids"] == sep) & b["attention_mask"].bool()
                n_scores += len(probs[at].tolist())
        _sync(torch, device)
        return _clock(device) - t0, n_scores

    score_all()  # warm-up
    runs = [score_all() for _ in range(repeats)]
    assert all(n == solutions * steps for _, n in runs), "a separator was lost to truncation or padding"
    secs = statistics.median(t for t, _ in runs)
    return {"solutions": solutions, "steps": steps, "batch": batch_size, "tokens": n_tokens,
            "tok_s": n_tokens / secs, "solutions_s": solutions / secs}


GEN_HEADER = (f"{'prompts':>8} {'batch':>6} {'new tok':>8} {'raw tok/s':>11} {'engine tok/s':>13} "
              f"{'overhead':>9}")


def gen_row(row: dict) -> str:
    """One line of the generation table (GEN_HEADER's columns)."""
    return (f"{row['prompts']:>8} {row['batch']:>6} {row['new_tokens']:>8} {row['raw_tok_s']:>11.1f} "
            f"{row['engine_tok_s']:>13.1f} {row['overhead_pct']:>8.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--dtype", default=None, help="bfloat16 on cuda, float32 on cpu unless given")
    ap.add_argument("--small", action="store_true", help="a small model instead of the 1.5B shape")
    ap.add_argument("--prompts", type=int, default=None)
    ap.add_argument("--batch-sizes", default=None, help="comma-separated engine/raw batch sizes")
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solutions", type=int, default=None)
    args = ap.parse_args(argv)

    import tempfile

    import torch
    import transformers
    from hf_tiny import build_tiny_tokenizer
    from transformers import AutoModelForCausalLM

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no GPU: torch {torch.__version__} sees no CUDA device (use --device cpu --small)")
        return 2
    dtype = getattr(torch, args.dtype) if args.dtype else (
        torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    shape = SMALL if args.small else QWEN25_15B
    cpu = args.device == "cpu"
    prompts = args.prompts or (8 if cpu else 64)
    new_tokens = args.new_tokens or (32 if cpu else 256)
    batch_sizes = [int(b) for b in (args.batch_sizes or ("4" if cpu else "16,64")).split(",")]
    solutions = args.solutions or (16 if cpu else 256)

    tokenizer = build_tiny_tokenizer(tempfile.mkdtemp(prefix="gpu-check-tok-"))
    device_name = torch.cuda.get_device_name(args.device) if not cpu else "cpu"
    model_name = "small" if args.small else "Qwen2.5-1.5B"
    print(f"device {device_name}  torch {torch.__version__}  transformers {transformers.__version__}  "
          f"dtype {str(dtype).removeprefix('torch.')}  model {model_name}-shaped, random weights")
    model = build_in_place(AutoModelForCausalLM, qwen2_config(shape, len(tokenizer), tokenizer),
                           args.device, dtype)
    print(f"parameters {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M")
    print()
    print("generation (greedy, fixed length): raw model.generate vs engine=transformers")
    print(GEN_HEADER)
    for bs in batch_sizes:
        print(gen_row(bench_generation(model, tokenizer, device=args.device, prompts=prompts,
                                       new_tokens=new_tokens, batch_size=bs, repeats=args.repeats,
                                       context_length=min(4096, shape.max_positions))))
    del model
    if not cpu:
        torch.cuda.empty_cache()
    print()
    print("reward-model scoring (Qwen2-shaped token classification, P(label 1) at each <extra_0>)")
    print(f"{'solutions':>10} {'steps':>6} {'batch':>6} {'tokens':>8} {'tok/s':>11} {'solutions/s':>12}")
    for bs in (batch_sizes[-1],):
        row = bench_reward_scoring(tokenizer, shape, device=args.device, dtype=dtype, solutions=solutions,
                                   steps=8, batch_size=bs, repeats=args.repeats)
        print(f"{row['solutions']:>10} {row['steps']:>6} {row['batch']:>6} {row['tokens']:>8} "
              f"{row['tok_s']:>11.1f} {row['solutions_s']:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
