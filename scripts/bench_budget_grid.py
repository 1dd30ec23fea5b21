"""Benchmark: tokens a budget-forcing grid generates, shared against regenerated per budget.

Runs ``strategy=budget-forcing-short`` with the embedded model twice, each
into a fresh store:

  shared      the whole grid in one run: one thinking generation per sample,
              in segments ending at each budget, plus one answer per budget;
  per budget  one run per budget (``strategy.budgets=[b]``), as s1's scripts
              do: every budget regenerates its thinking from scratch.

and prints the tokens each generated (from the call layer's counts), the
ratio, and the issue's target: at most the largest budget plus one answer
call per budget, per sample.

    python scripts/bench_budget_grid.py --budgets 8,16,32,48,64 --problems 6 --n 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def run(budgets: list[int], args, store: Path):
    from tts_bench.calls import CallLayer
    from tts_bench.config import compose
    from tts_bench.dataset import load_problems, load_task
    from tts_bench.engines import make_engine
    from tts_bench.store import GenerationStore
    from tts_bench.strategies import AnswerReader, StrategyProblem, make_strategy

    cfg = compose(["strategy=budget-forcing-short", f"strategy.budgets=[{','.join(map(str, budgets))}]",
                   f"strategy.answer_max_tokens={args.answer_tokens}", f"dataset.size={args.problems}",
                   f"budget.n={args.n}", f"strategy.max_extensions={args.extensions}"])
    global ENGINE
    if ENGINE is None:
        ENGINE = make_engine(cfg.engine, cfg.model)
    problems = [StrategyProblem(p.id, p.messages) for p in load_problems(cfg.dataset)]
    layer = CallLayer(ENGINE, GenerationStore(store), base_seed=0, dataset="arith", batch_size=8)
    t = time.perf_counter()
    traj = make_strategy(cfg, AnswerReader(load_task(cfg.dataset.name).extractor)).run(problems, layer)
    return layer.stats, traj, time.perf_counter() - t


ENGINE = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="8,16,32,48,64")
    ap.add_argument("--problems", type=int, default=6)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--answer-tokens", type=int, default=12)
    ap.add_argument("--extensions", type=int, default=0)
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_grid_"))
    shared, traj, ts = run(budgets, args, tmp / "shared")
    regen_tokens, regen_samples, tr = 0, 0, 0.0
    for b in budgets:
        st, _, t = run([b], args, tmp / f"b{b}")
        regen_tokens += st.completion_tokens
        regen_samples += st.generated
        tr += t
    samples = args.problems * args.n
    answers = sum(r.completion_tokens for t in traj for r in t.calls[-1:])
    target = samples * (max(budgets) + len(budgets) * args.answer_tokens)
    print(f"grid {budgets}, {args.problems} problems x n={args.n} = {samples} samples, "
          f"answers up to {args.answer_tokens} tokens, extensions {args.extensions}")
    print(f"shared grid   : {shared.completion_tokens} tokens generated in {shared.generated} calls "
          f"({ts:.1f}s); {answers} of them in forced answers")
    print(f"per budget    : {regen_tokens} tokens generated in {regen_samples} calls ({tr:.1f}s)")
    print(f"shared / per-budget tokens: {shared.completion_tokens / max(regen_tokens, 1):.2f}x")
    print(f"target (largest budget + one answer per budget, per sample): <= {target} tokens -> "
          f"{'met' if shared.completion_tokens <= target else 'NOT met'}")
    if ENGINE is not None:
        ENGINE.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
