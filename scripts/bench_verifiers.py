"""Verifier benchmarks: calls on a rerun (target 0), genrm verifications/s and PRM scoring on CPU.

    python scripts/bench_verifiers.py                  # embedded SmolLM2 genrm + a tiny random PRM
    python scripts/bench_verifiers.py --problems 20 --n 4 --verifications 2

1. Generates a parallel run with the embedded model (cached after the first
   time), scores it with verifier=genrm and times it: verifications/s and
   verifier tokens/s. 2. Scores it again: verifier model calls (target 0).
3. Scores random solutions with a tiny Qwen2-shaped token-classification PRM
   (tests/hf_tiny.py, built here, random weights) through the prm backend:
   solutions/s and tokens/s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--verifications", type=int, default=2)
    ap.add_argument("--prm-solutions", type=int, default=64)
    ap.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from tts_bench.config import compose, with_verifier
    from tts_bench.runner import run_experiment
    from tts_bench.runner.scoring import score_run

    root = Path(args.out or tempfile.mkdtemp(prefix="bench-verifiers-"))
    base = [f"dataset.size={args.problems}", f"budget.n={args.n}", f"store_dir={root}/store",
            f"runs_dir={root}/runs", "plot=false"]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    run = run_experiment(compose(base), progress=False)
    cfg = with_verifier(compose(base), ["verifier=genrm", f"verifier.verifications={args.verifications}"])
    first = score_run(run.run_dir, cfg)
    st = first.stats
    v_count = st.scored * args.verifications
    print(f"genrm, embedded SmolLM2-135M, {st.scored} solutions x V={args.verifications}: "
          f"{first.seconds:.1f} s, {v_count / first.seconds:.2f} verifications/s, "
          f"{(st.input_tokens + st.output_tokens) / first.seconds:.0f} verifier tokens/s "
          f"({st.input_tokens} read, {st.output_tokens} generated); "
          f"{first.verifier_calls} verifications generated; read as {first.sources}")
    again = score_run(run.run_dir, cfg)
    print(f"rerun: {again.verifier_calls} verifier calls, {again.stats.scored} scored, "
          f"{again.stats.cached} from the store, {again.seconds:.2f} s (target: 0 calls)")

    try:
        from hf_tiny import build_tiny_model
    except ImportError:
        print("prm: skipped (torch/transformers not installed)")
        return
    from tts_bench.verifiers import ScoreRequest
    from tts_bench.verifiers.reward_model import RewardModelVerifier

    folder = build_tiny_model(root / "tiny-prm", head="token", num_labels=2, hidden_size=256, num_layers=4)
    vcfg = compose(["verifier=qwen2.5-math-prm", f"verifier.path={folder}", "verifier.dtype=float32",
                    "verifier.device=cpu", "verifier.auto_class=null", "verifier.trust_remote_code=false",
                    "verifier.batch_size=16"]).verifier
    prm = RewardModelVerifier(vcfg)
    steps = tuple(f"Step {i}: we compute {i} * 7 = {7 * i} and carry on." for i in range(8))
    reqs = [ScoreRequest(f"k{i}", "p", "What is 6 * 7?", steps[: 2 + i % 7])
            for i in range(args.prm_solutions)]
    list(prm.score(reqs[:16]))  # warm-up
    t = time.perf_counter()
    tokens = sum(s.input_tokens for group in prm.score(reqs) for _, s in group)
    dt = time.perf_counter() - t
    print(f"prm (tiny Qwen2-shaped, 4 layers x 256, random weights, CPU): {len(reqs)} solutions in "
          f"{dt:.2f} s: {len(reqs) / dt:.1f} solutions/s, {tokens / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
