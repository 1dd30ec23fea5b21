"""Benchmark: the regression gate's false-alarm rate and power in a seeded simulation.

Each simulated problem has a true solve rate p ~ Beta(2, 3); a run is n=8
samples per problem (pass@1 = c/8). Same-distribution reruns measure false
alarms; a rerun with every p lowered by --drop measures power.

    python scripts/bench_gate.py --sims 1000 --problems 200 --drop 0.10
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--drop", type=float, default=0.10)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()
    from tts_bench.metrics.gate import check_regression

    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(args.problems)]

    def frame(v):
        return pd.DataFrame({"problem_id": ids, "metric": "pass@k", "k": 1, "value": v})

    counts = {("same", 0.0): 0, ("same", 0.02): 0, ("drop", 0.0): 0, ("drop", 0.02): 0}
    mde = []
    for s in range(args.sims):
        p = rng.beta(2, 3, size=args.problems)
        base = rng.binomial(8, p) / 8
        same = rng.binomial(8, p) / 8
        drop = rng.binomial(8, np.clip(p - args.drop, 0, 1)) / 8
        for (kind, margin) in counts:
            run = same if kind == "same" else drop
            r = check_regression(frame(run), frame(base), [("pass@k", 1)], margin=margin, alpha=args.alpha,
                                 n_boot=args.bootstrap, seed=s)
            counts[(kind, margin)] += r.exit_code == 1
            if kind == "same" and margin == 0.0:
                mde.append(r.table["mde"].iloc[0])
    n = args.sims
    print(f"{n} simulations, {args.problems} problems x n=8, alpha {args.alpha}, {args.bootstrap} resamples")
    for margin in (0.0, 0.02):
        fa = counts[("same", margin)] / n
        pw = counts[("drop", margin)] / n
        print(f"margin {margin:.2f}: false alarms {fa:.3f} (+-{2 * np.sqrt(fa * (1 - fa) / n):.3f}), "
              f"power on a {args.drop:.2f} drop {pw:.3f}")
    print(f"median minimum detectable effect: {np.median(mde):.4f}")


if __name__ == "__main__":
    main()
