"""Benchmark: verifier-guided search on the embedded model: what each strategy costs, and its overhead.

For each search strategy and each N it runs the search on the embedded
SmolLM2 model with verifier=genrm (the same model, P(Yes)) into a fresh
store and prints, per problem: policy calls, tokens read (prompt + prefix),
the prefix re-read by later steps (what prefix caching saves, as a share of
the tokens read), tokens generated, verifier calls and verifier input
tokens, the whole tree counted. Then the harness overhead: every engine
request the search made (policy steps and genrm verifications) is recorded
and replayed straight into the engine in the same order; the difference is
what the harness adds (keys, store reads and writes, scoring bookkeeping,
the search loop). Target: at most 5% of engine time. Prints figures; asserts
nothing.

    python scripts/bench_search.py                                # N = 4, 16; 2 problems
    python scripts/bench_search.py --ns 4,16,64 --problems 3 --strategies beam-search,rebase
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_overhead import Recording  # scripts/ is on sys.path when a script runs

STRATEGIES = "beam-search,dvts,particle-filter,rebase,best-first"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=2)
    ap.add_argument("--ns", default="4,16")
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=32)
    args = ap.parse_args()

    from tts_bench.calls import CallLayer
    from tts_bench.config import compose
    from tts_bench.dataset import load_problems, load_task
    from tts_bench.engines import make_engine
    from tts_bench.store import GenerationStore, ScoreStore
    from tts_bench.strategies import AnswerReader, StrategyProblem, make_strategy
    from tts_bench.verifiers import ScoreLayer, make_verifier

    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_search_"))
    engine = None
    print(f"{args.problems} problems, genrm V=1 on the embedded model; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    print(f"{'strategy':<16}{'N':>4}{'calls':>8}{'read':>9}{'prefix':>9}{'share':>7}{'gen':>8}"
          f"{'v.calls':>9}{'v.read':>9}{'harness s':>11}{'direct s':>10}{'overhead':>10}")
    for name in args.strategies.split(","):
        for n in [int(x) for x in args.ns.split(",")]:
            width = 2 if n % 4 else 4
            cfg = compose([f"strategy={name}", "verifier=genrm", "verifier.verifications=1",
                           f"dataset.size={args.problems}", f"budget.n={n}", f"strategy.beam_width={width}",
                           f"strategy.max_steps={args.max_steps}", f"strategy.max_tokens={args.step_tokens}",
                           f"store_dir={tmp}/store"])
            if engine is None:
                engine = make_engine(cfg.engine, cfg.model)
            problems = [StrategyProblem(p.id, p.messages) for p in load_problems(cfg.dataset)]
            shutil.rmtree(tmp / "store", ignore_errors=True)
            rec = Recording(engine)
            t = time.perf_counter()
            verifier, _ = make_verifier(cfg, engine=rec)
            scorer = ScoreLayer(verifier, ScoreStore(tmp / "store"), dataset="arith")
            layer = CallLayer(rec, GenerationStore(tmp / "store"), base_seed=0, dataset="arith",
                              batch_size=cfg.engine.batch_size)
            strat = make_strategy(cfg, AnswerReader(load_task("arith").extractor), scorer=scorer)
            out = strat.run(problems, layer)
            harness = time.perf_counter() - t
            t = time.perf_counter()
            for _ in engine.generate(rec.requests):
                pass
            direct = time.perf_counter() - t
            per = {}
            for tr in out:
                per.setdefault(tr.problem_id, tr.extra)
            def mean(col, per=per):
                return sum(e[col] for e in per.values()) / len(per)

            read, prefix = mean("tree_read_tokens"), mean("tree_prefix_tokens")
            print(f"{name:<16}{n:>4}{mean('tree_policy_calls'):>8.1f}{read:>9.0f}{prefix:>9.0f}"
                  f"{(prefix / read if read else 0):>7.0%}{mean('tree_completion_tokens'):>8.0f}"
                  f"{mean('tree_verifier_calls'):>9.1f}{mean('tree_verifier_input_tokens'):>9.0f}"
                  f"{harness:>11.2f}{direct:>10.2f}{100 * (harness - direct) / direct:>+9.1f}%")
    if engine is not None:
        engine.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
