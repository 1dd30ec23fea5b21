r"""Benchmark grade_samples on a realistic pool of model outputs.

Builds, from the real MATH500 and GSM8K gold answers, 50-100 outputs per
problem: reasoning text taken from the reference solution, ending in a final
``\boxed{}`` that holds the gold in one of several equivalent forms, one of a
few recurring wrong answers, an occasional one-off wrong number, or nothing
(a truncated generation). Each output carries the label it was built with, so
the run also reports how often the grader agrees with the construction.

    python scripts/bench_grading.py                      # 3 runs, workers=2, no cache
    python scripts/bench_grading.py --runs 5 --workers 4 --data /work/shared/datasets

(tts_bench must be importable: ``pip install -e .``, or ``PYTHONPATH=.`` from
the repository root.)

Prints samples, distinct pairs, grader calls, samples per grader call,
samples/s and wall time (median of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
from pathlib import Path

import pandas as pd

from tts_bench.grading import canonical_number, grade_samples, normalize_answer

_FRAC_RE = re.compile(r"^\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
_CALC_RE = re.compile(r"<<[^>]*>>")
_CLOSINGS = [
    "Therefore, the final answer is $\\boxed{{{a}}}$.",
    "So the answer is $\\boxed{{{a}}}$.",
    "Final Answer: The final answer is $\\boxed{{{a}}}$. I hope it is correct.",
    "Putting it together, we get \\[\\boxed{{{a}}}\\]",
    "**Answer:** $\\boxed{{{a}}}$",
    "Hence the result is \\boxed{{{a}}}.",
]


def load(data: Path) -> list[dict]:
    """(id, gold, reasoning) for every MATH500 and GSM8K problem."""
    problems = []
    with open(data / "math500.jsonl") as f:
        for line in f:
            r = json.loads(line)
            # the reference solution without its own final box
            reasoning = r["solution"].split("\\boxed", 1)[0]
            problems.append({"id": r["id"], "gold": r["answer"], "reasoning": reasoning})
    with open(data / "gsm8k_test.jsonl") as f:
        for line in f:
            r = json.loads(line)
            reasoning = _CALC_RE.sub("", r["solution"].split("####", 1)[0])
            problems.append({"id": r["id"], "gold": r["answer"], "reasoning": reasoning})
    return problems


def equivalent_forms(gold: str) -> list[str]:
    """The gold as written, then other ways a model writes the same answer."""
    forms = [gold]
    number = canonical_number(gold.replace("\\$", "").replace("\\!", ""))
    if number is not None:
        if "." not in number:
            n = int(number)
            forms += [f"{n}.0", f"${n}$", f"{n}.00"]
            if abs(n) >= 1000:
                forms.append(f"{n:,}")
        else:
            forms += [number + "0", number.lstrip("0") or "0"]
    frac = _FRAC_RE.match(gold)
    if frac:
        a, b = frac.groups()
        forms += [f"{a}/{b}", f"\\dfrac{{{a}}}{{{b}}}", f"\\frac{a}{b}" if len(a + b) == 2 else ""]
        value = int(a) / int(b)
        if round(value, 6) == value:
            forms.append(repr(value))
    if "\\frac" in gold:
        forms.append(gold.replace("\\frac", "\\dfrac"))
    if gold.startswith("\\left("):
        forms.append(gold.replace("\\left(", "(").replace("\\right)", ")").replace(" ", ""))
    if "^\\circ" in gold:
        forms += [gold.replace("^\\circ", ""), gold.replace("^\\circ", "^{\\circ}")]
    if gold.startswith("\\text{") and gold.endswith("}"):
        forms.append(gold[len("\\text{") : -1])
    if ", " in gold:
        forms.append(gold.replace(", ", ","))
    return [f for f in dict.fromkeys(forms) if f]


def wrong_answers(gold: str, others: list[str], rng: random.Random) -> list[str]:
    """Two or three recurring wrong answers for one problem."""
    number = canonical_number(gold)
    if number is not None and "." not in number:
        n = int(number)
        pool = [str(n + 1), str(n - 1), str(2 * n), str(-n) if n else "1", str(n + 10)]
    else:
        pool = rng.sample(others, 4)
    # another problem's gold may be this one's in another form ("\\frac14" for "\\frac{1}{4}")
    same = {normalize_answer(f) for f in equivalent_forms(gold)}
    wrong = [w for w in pool if normalize_answer(w) not in same]
    return rng.sample(wrong, min(len(wrong), rng.randint(2, 3)))


def build_pool(
    problems: list[dict], lo: int, hi: int, seed: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = random.Random(seed)
    golds = [p["gold"] for p in problems]
    rows = []
    for p in problems:
        forms = equivalent_forms(p["gold"])
        weights = [6.0] + [1.0] * (len(forms) - 1)  # the gold as written is the usual form
        wrongs = wrong_answers(p["gold"], golds, rng)
        accuracy = rng.uniform(0.2, 0.95)
        reasoning = p["reasoning"].strip()
        for k in range(rng.randint(lo, hi)):
            u = rng.random()
            if u < 0.03:  # truncated: no final answer, reasoning cut short
                text, label = reasoning[: rng.randint(20, max(21, len(reasoning)))], None
            else:
                if u < 0.03 + accuracy * 0.97:
                    answer, label = rng.choices(forms, weights)[0], True
                elif rng.random() < 0.1:  # a one-off wrong number
                    answer, label = str(rng.randint(-50, 5000)), False
                else:
                    answer, label = rng.choice(wrongs), False
                if label is False and normalize_answer(answer) == normalize_answer(p["gold"]):
                    label = True
                closing = rng.choice(_CLOSINGS).format(a=answer)
                lead = "Let's think step by step.\n\n" if k % 2 else ""
                text = f"{lead}{reasoning}\n\n{closing}"
            rows.append({"problem_id": p["id"], "sample_index": k, "text": text, "label": label})
    return pd.DataFrame(rows), {p["id"]: p["gold"] for p in problems}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--min-samples", type=int, default=50)
    ap.add_argument("--max-samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    samples, gold = build_pool(load(args.data), args.min_samples, args.max_samples, args.seed)
    print(f"pool: {len(samples):,} samples over {len(gold):,} problems (MATH500 + GSM8K)")

    load_before = os.getloadavg()[0]
    runs = []
    for i in range(args.runs):
        graded, stats = grade_samples(
            samples,
            gold,
            extractor="boxed",
            grader="math",
            cache_dir=None,
            workers=args.workers,
            timeout_s=args.timeout,
        )
        runs.append(stats)
        print(
            f"run {i + 1}: {stats.seconds:.2f}s, {stats.samples / stats.seconds:,.0f} samples/s, "
            f"{stats.grader_calls:,} grader calls, {stats.timeouts} timeouts, {stats.errors} errors"
        )

    labelled = graded[graded["label"].notna()]
    agree = (labelled["correct"] == labelled["label"].astype(bool)).mean()
    s = runs[0]
    seconds = statistics.median(r.seconds for r in runs)
    print()
    print(f"samples               {s.samples:,}")
    print(f"distinct pairs        {s.distinct_pairs:,}")
    print(f"grader calls          {s.grader_calls:,}")
    print(f"samples / call        {s.samples / s.grader_calls:.1f}x")
    print(f"no answer             {s.no_answer:,}")
    print(f"timeouts / errors     {s.timeouts} / {s.errors}")
    print(f"agreement with labels {agree:.4%} of {len(labelled):,} labelled samples")
    print(f"wall time (median)    {seconds:.2f}s over {len(runs)} runs, workers={args.workers}")
    print(f"samples/s (median)    {s.samples / seconds:,.0f}")
    print(
        f"machine               {os.cpu_count()} CPUs, 1-min load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
