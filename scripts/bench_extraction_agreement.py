r"""Agreement of tts-bench's extraction and grading with Math-Verify's own test labels.

Math-Verify's test suite (huggingface/Math-Verify, folder tests/) holds
hundreds of (gold, prediction, expected) cases, most of them whole model
outputs. This script reads those cases from a checkout you point it at (the
files are parsed with ``ast``, never imported or run), grades each
prediction against its gold as tts-bench grades a model output against a
dataset gold (``grade_samples`` with the ``boxed`` extractor and the ``math``
grader), and compares the verdict with the suite's label::

    git clone https://github.com/huggingface/Math-Verify /tmp/Math-Verify
    PYTHONPATH=. python scripts/bench_extraction_agreement.py /tmp/Math-Verify/tests
    PYTHONPATH=. python scripts/bench_extraction_agreement.py /tmp/Math-Verify/tests --all

A case "uses default options" when its test compares with the suite's
default settings: both LaTeX and expression extraction, the default float
rounding (6), strict comparison, and no set/relation comparison (plus the
cases that call ``parse``/``verify`` with no arguments). Only those are the
target; ``--all`` also scores the cases that change an option (they test
math-verify settings tts-bench does not expose, so a disagreement there is
expected). Nothing from the checkout is copied or kept.

Prints agreement overall and per test file, then every disagreement with
what tts-bench extracted.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tts_bench.grading import grade_samples

_DEFAULT_MATCH_TYPES = ["latex", "expr"]
_DEFAULT_OPTIONS = {"precision": 6, "strict": True, "allow_set_relation_comp": False}
_EXPECTED_NAMES = ("expected", "result")


@dataclass(frozen=True)
class Case:
    file: str
    test: str
    gold: str
    pred: str
    expected: bool
    default: bool  # the test compares with default options
    kind: str = "compare_strings"  # or "verify": parse()/verify() called with no options


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _parametrize(decorator: ast.AST) -> tuple[list[str], ast.AST] | None:
    """(argument names, the node of the case list) of ``@pytest.mark.parametrize``."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
        return None
    if decorator.func.attr != "parametrize" or len(decorator.args) < 2:
        return None
    names = _literal(decorator.args[0])
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    if not isinstance(names, (list, tuple)):
        return None
    return list(names), decorator.args[1]


def _comparison(fn: ast.FunctionDef) -> tuple[str, dict[str, ast.AST]] | None:
    """The call that compares gold and pred in a test body: its kind and keywords."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "compare_strings":
            return "compare_strings", {k.arg: k.value for k in node.keywords if k.arg}
        if node.func.id == "verify" and all(
            isinstance(a, ast.Call) and getattr(a.func, "id", "") == "parse" and len(a.args) == 1
            and not a.keywords
            for a in node.args
        ) and not node.keywords:
            return "verify", {}
    return None


def _option(value: ast.AST | None, params: dict, default):
    """A keyword's value for one case: a literal, or the case's parameter of that name."""
    if value is None:
        return default
    if isinstance(value, ast.Name):
        return params.get(value.id, default)
    return _literal(value)


def load_cases(tests_dir: Path) -> list[Case]:
    """Every (gold, pred, expected) case of the suite's parametrized comparison tests."""
    cases = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            comparison = _comparison(fn)
            specs = [p for p in map(_parametrize, fn.decorator_list) if p]
            if comparison is None or not specs:
                continue
            kind, keywords = comparison
            names, rows_node = specs[0]
            expected_name = next((n for n in _EXPECTED_NAMES if n in names), None)
            if "gold" not in names or "pred" not in names or expected_name is None:
                continue
            rows = rows_node.elts if isinstance(rows_node, (ast.List, ast.Tuple)) else []
            for row in rows:
                values = _literal(row)
                if not isinstance(values, tuple) or len(values) != len(names):
                    continue  # a case built at run time (an f-string): not a literal label
                params = dict(zip(names, values))
                if kind == "verify":
                    default = True
                else:
                    match_types = _option(keywords.get("match_types"), params, _DEFAULT_MATCH_TYPES)
                    default = list(match_types) == _DEFAULT_MATCH_TYPES and all(
                        _option(keywords.get(k), params, v) == v for k, v in _DEFAULT_OPTIONS.items()
                    )
                cases.append(
                    Case(
                        file=path.name,
                        test=fn.name,
                        gold=str(params["gold"]),
                        pred=str(params["pred"]),
                        expected=bool(params[expected_name]),
                        default=default,
                        kind=kind,
                    )
                )
    return cases


def grade(cases: list[Case], workers: int, timeout_s: float) -> pd.DataFrame:
    """tts-bench's verdict on each case: one problem per case, its pred as the output."""
    ids = [f"c{i}" for i in range(len(cases))]
    samples = pd.DataFrame({"problem_id": ids, "text": [c.pred for c in cases]})
    gold = {i: c.gold for i, c in zip(ids, cases)}
    graded, _ = grade_samples(
        samples, gold, extractor="boxed", grader="math", cache_dir=None,
        workers=workers, timeout_s=timeout_s,
    )  # fmt: skip
    graded["expected"] = [c.expected for c in cases]
    graded["file"] = [c.file for c in cases]
    graded["test"] = [c.test for c in cases]
    graded["gold"] = [c.gold for c in cases]
    graded["default"] = [c.default for c in cases]
    return graded


def math_verify_itself(cases: list[Case]) -> list[bool]:
    """math-verify's verdict on each default-option case, called as the suite calls it.

    Checks the loader: these should agree with the labels almost everywhere.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    helper = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    out = []
    for c in cases:
        if c.kind == "verify":  # parse()/verify() with no options
            out.append(bool(verify(parse(c.gold), parse(c.pred))))
        else:  # the suite's compare_strings helper, default arguments
            out.append(bool(verify(parse(c.gold, helper), parse(c.pred, helper))))
    return out


def _clip(s: object, n: int = 90) -> str:
    s = repr(s)
    return s if len(s) <= n else s[: n // 2 - 2] + " … " + s[-(n // 2 - 2) :]


def report(graded: pd.DataFrame, label: str) -> float:
    agree = graded["correct"] == graded["expected"]
    print(f"\n{label}: {agree.sum()} / {len(graded)} agree ({agree.mean():.1%})")
    per_file: dict[str, list[bool]] = defaultdict(list)
    for f, a in zip(graded["file"], agree):
        per_file[f].append(bool(a))
    for f, flags in sorted(per_file.items()):
        print(f"  {f:28s} {sum(flags):4d} / {len(flags):4d}  {sum(flags) / len(flags):6.1%}")
    wrong = graded[~agree]
    if len(wrong):
        print(f"  disagreements ({len(wrong)}):")
        for _, r in wrong.iterrows():
            print(
                f"  - {r['file']}::{r['test']} expected {int(r['expected'])}, got "
                f"{int(r['correct'])} ({r['grade_status']})\n"
                f"      gold {_clip(r['gold'])}\n"
                f"      pred {_clip(r['text'])}\n"
                f"      extracted {_clip(r['extracted'])}"
            )
    return float(agree.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("tests_dir", type=Path, help="the tests/ folder of a Math-Verify checkout")
    ap.add_argument("--all", action="store_true", help="also score cases with non-default options")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument(
        "--reference", action="store_true",
        help="also print math-verify's own agreement on the default-option cases",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if not (args.tests_dir / "test_all.py").is_file():
        print(
            f"error: {args.tests_dir} holds no test_all.py; pass the tests/ folder of a "
            "Math-Verify checkout (git clone https://github.com/huggingface/Math-Verify)",
            file=sys.stderr,
        )
        return 2
    cases = load_cases(args.tests_dir)
    chosen = cases if args.all else [c for c in cases if c.default]
    print(
        f"{len(cases)} literal cases in {args.tests_dir}, {sum(c.default for c in cases)} "
        "with default options"
    )
    graded = grade(chosen, args.workers, args.timeout)
    report(graded[graded["default"]], "default-option cases")
    if args.reference:
        default = [c for c in cases if c.default]
        own = math_verify_itself(default)
        agree = sum(o == c.expected for o, c in zip(own, default))
        print(
            f"\nmath-verify itself, as the suite calls it: {agree} / {len(default)} agree "
            f"({agree / len(default):.1%})"
        )
    if args.all:
        report(graded[~graded["default"]], "cases with a non-default option (informational)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
