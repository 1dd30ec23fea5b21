"""Harness overhead of engine=transformers on CPU: its decode loop against raw ``model.generate``.

A small Qwen2-shaped model with random weights (built in memory, nothing
downloaded), the same left-padded batches of chat prompts, greedy, every
sample forced to the same length (engine: ignore_eos; raw: min_new_tokens).
Both are timed alternately, in this process's CPU time; the median of
--repeats runs is printed as tokens/s with the engine's overhead in percent.
torch runs on one thread, so CPU time is what an idle machine's wall time
would be and other processes on a shared machine disturb both sides less.

    python scripts/bench_transformers.py
    python scripts/bench_transformers.py --prompts 16 --batch-sizes 1,8 --new-tokens 64 --repeats 7

The measurement code is the GPU check's (scripts/gpu_check_transformers.py),
run here at CPU size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check_transformers import (  # noqa: E402
    GEN_HEADER,
    SMALL,
    bench_generation,
    build_in_place,
    gen_row,
    qwen2_config,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from hf_tiny import build_tiny_tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    tokenizer = build_tiny_tokenizer(tempfile.mkdtemp(prefix="bench-tok-"))
    model = build_in_place(AutoModelForCausalLM, qwen2_config(SMALL, len(tokenizer), tokenizer), "cpu",
                           torch.float32)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"cpu, {args.threads} thread(s), torch {torch.__version__}, small Qwen2-shaped random model "
          f"({n_params:.1f} M parameters), greedy, CPU time, median of {args.repeats}")
    print(GEN_HEADER)
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        print(gen_row(bench_generation(model, tokenizer, device="cpu", prompts=args.prompts,
                                       new_tokens=args.new_tokens, batch_size=bs, repeats=args.repeats,
                                       context_length=SMALL.max_positions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
