r"""Extraction and normalization as a grader sees them: model text in, verdict out.

Each table row is a model output, a gold answer, what must be extracted and
whether it is right; most classes of failure come in both directions (the
right gold accepted, a wrong one refused), so a rule cannot pass by saying
yes to everything. Majority-vote classes are checked against grading: two
answers share a class only if the grader calls them equal.

    python -m pytest tests/test_extraction.py -q
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tts_bench.grading import extract_answer, get_grader, grade_samples, normalize_answer
from tts_bench.grading.extract import final_text, vote_class

DATASETS = Path("/work/shared/datasets")
ROOT = Path(__file__).resolve().parent.parent


def _grade(text: str, gold: str, extractor: str = "boxed", grader: str = "math") -> pd.Series:
    frame = pd.DataFrame({"problem_id": ["p"], "text": [text]})
    graded, _ = grade_samples(
        frame, {"p": gold}, extractor=extractor, grader=grader, cache_dir=None, workers=0
    )
    return graded.iloc[0]


# (text, extracted, gold, correct): the extractor "boxed", the grader "math"
MATH_CASES = [
    # several boxes listed together are one answer, graded as a set
    (r"so $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", "(2,2), (6,2)", "(2,2), (6,2)", True),
    (r"so $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", "(2,2), (6,2)", "(6,2)", False),
    (r"\boxed{1}, \boxed{2}, \boxed{3}", "1, 2, 3", "3, 2, 1", True),
    (r"\boxed{1}, \boxed{2}, \boxed{3}", "1, 2, 3", "3", False),
    (r"\[\boxed{x = 1} \quad \text{and} \quad \boxed{x = -2}\]", "x = 1, x = -2", "1, -2", True),
    (r"\( y_1 = \boxed{2} \) and \( y_2 = \boxed{5} \)", "2, 5", "2, 5", True),
    (r"$$\boxed{(3,3)} \text{ for part (a) and } \boxed{(1,1)}$$", "(3,3), (1,1)", "(1,1), (3,3)",
     True),
    (r"\boxed{4} \boxed{4}", "4", "4", True),  # a repeated box counts once
    # a box, then more reasoning and another box: a correction, not a list
    (r"first \boxed{3}; wait, that is wrong, so \boxed{4}", "4", "4", True),
    (r"first \boxed{3}; wait, that is wrong, so \boxed{4}", "4", "3", False),
    # a final-answer statement after an intermediate box corrects it
    (r"The interest is \boxed{255}. Adding it, the final answer is $10,455$.", "10,455", "10455",
     True),
    (r"The interest is \boxed{255}. Adding it, the final answer is $10,455$.", "10,455", "255",
     False),
    # ... but a box after the statement is the later word
    (r"The final answer is 5. Checking again gives \boxed{6}.", "6", "6", True),
    (r"Final Answer: The final answer is $\boxed{7}$. I hope it is correct.", "7", "7", True),
    # no box: the last math span, read by math-verify, before any last number
    (r"Solving, we need $x \geq 5$.", r"x \geq 5", r"x \ge 5", True),
    (r"Solving, we need $x \geq 5$.", r"x \geq 5", "5", False),
    (r"The ratio is \frac{10}{9}", r"\frac{10}{9}", r"\frac{10}{9}", True),
    (r"The ratio is \frac{10}{9}", r"\frac{10}{9}", "9", False),
    ("So the solution of the system is $(7, 6)$.", "(7, 6)", "(7,6)", True),
    ("So the solution of the system is $(7, 6)$.", "(7, 6)", "6", False),
    (r"Thus \[\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}\]",
     r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
     r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", True),
    (r"Thus \[\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}\]",
     r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", "4", False),
    ("The chance that Alice wins is 2/3.", "2/3", r"\frac{2}{3}", True),
    ("She had 3 apples, then 1,234 more.", "1,234", "1234", True),
    ("He paid $5 and then $7 more.", "7", "7", True),  # currency, not a math span
    # a statement gives the answer in it, not the sentence
    ("Final Answer: The largest $n$ is 34.", "34", "34", True),
    ("Final Answer: The largest $n$ is 34.", "34", "n", False),
    ("The answer is: Jane started growing the sphere 3 hours ago.", "3", "3", True),
    ("The answer is Evelyn.", "Evelyn", r"\text{Evelyn}", True),
    ("Final Answer: The final answer is $42$. I hope it is correct. Note: $41$ was close.", "42",
     "42", True),
    # whitespace that carries meaning stays
    (r"\boxed{28 percent}", "28 percent", r"28\%", True),
    (r"\boxed{28 percent}", "28 percent", "28", True),
    (r"\boxed{32, 349}", "32, 349", "32349", False),  # a list of two numbers
    (r"\boxed{32, 349}", "32, 349", "32, 349", True),
    (r"\boxed{32,349}", "32,349", "32349", True),  # a thousands separator
    (r"\boxed{32,\! 349}", r"32,\! 349", "32349", True),
    # percent is read the same on either side
    (r"\boxed{10\%}", r"10\%", "10", True),
    (r"\boxed{10}", "10", r"10\%", True),
    (r"\boxed{10\%}", r"10\%", r"10\%", True),
    (r"\boxed{12\%}", r"12\%", "10", False),
    # AIME answers with leading zeros
    (r"\boxed{070}", "070", "70", True),
    (r"\boxed{70}", "70", "070", True),
    (r"\boxed{007}", "007", "70", False),
    # a reasoning model's answer follows its thinking
    (r"<think>maybe \boxed{5}</think>So the answer is \boxed{6}.", "6", "6", True),
    (r"<think>maybe \boxed{5}</think>So the answer is \boxed{6}.", "6", "5", False),
    (r"<think>maybe \boxed{5}</think>The answer is $6$.", "6", "6", True),
]  # fmt: skip


@pytest.mark.parametrize(("text", "extracted", "gold", "correct"), MATH_CASES)
def test_math_extraction_and_grading(text, extracted, gold, correct):
    row = _grade(text, gold)
    assert row["extracted"] == extracted
    assert row["grade_status"] == "ok"
    assert bool(row["correct"]) is correct


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unbalanced delimiters by the thousand before the answer: read in one pass
        ("\\[ x " * 3000 + "\\boxed{5}", "5"),
        ("\\boxed{" * 3000 + " so \\boxed{7}", "7"),
        ("$$ a " * 3001 + "Answer: 9", "9"),
        ("\\( y " * 3000 + "\n$z$", "z"),
    ],
)
def test_unbalanced_delimiters_do_not_hide_the_answer(text, expected):
    assert extract_answer(text, "boxed") == expected


@pytest.mark.parametrize(
    "text",
    [
        r"<think>Let me try \boxed{5} first and",  # stopped while thinking
        "I am not sure.",
        "",
    ],
)
def test_no_answer(text):
    row = _grade(text, "5")
    assert row["extracted"] is None and row["grade_status"] == "no_answer"
    assert not row["correct"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>b", "b"),
        ("<think>a</think>b</think>c", "c"),
        ("no tags", "no tags"),
        ("<think>never closed", ""),
        ("thinking whose opening tag was in the prompt</think>answer", "answer"),
    ],
)
def test_final_text(text, expected):
    assert final_text(text) == expected


# (text, gold, correct): the extractor and the grader "choice", as GPQA uses them
CHOICE_CASES = [
    ("(B)", "B", True),
    ("Answer: B", "B", True),
    ("**B**", "B", True),
    ("The correct option is B.", "B", True),
    ("The correct answer is **(B)**", "B", True),
    (r"so $\boxed{B}$", "B", True),
    ("(A) fails and (C) fails. Answer: B", "B", True),
    ("Answer: C", "B", False),
    ("The correct option is C.", "B", False),
    ("<think>It could be (A).</think>\nThe correct option is B.", "B", True),
    ("<think>It could be (A).</think>\nThe correct option is B.", "A", False),
]


@pytest.mark.parametrize(("text", "gold", "correct"), CHOICE_CASES)
def test_choice_letters_as_models_write_them(text, gold, correct):
    row = _grade(text, gold, extractor="choice", grader="choice")
    assert bool(row["correct"]) is correct


@pytest.mark.parametrize(
    ("text", "extractor", "expected"),
    [
        ("<think>#### 12</think>\n#### 13", "gsm8k", "13"),
        (r"<think>\boxed{12}</think> she pays \boxed{13}", "gsm8k", "13"),
        (r"She pays \boxed{12}. Then the final answer is 15.", "gsm8k", "15"),
        ("<think>12</think> 13", "number", "13"),
        ("<think>no end to 12", "number", None),
    ],
)
def test_other_extractors_read_after_thinking(text, extractor, expected):
    assert extract_answer(text, extractor) == expected


# --------------------------------------------------------------------------- vote classes

# Answers a problem's samples may give; classes must agree with grading on every pair.
VOTE_POOL = [
    "0.5", r"\frac{1}{2}", r"\frac12", "1/2", "2", "2.0", "32, 349", "32,349", "32349",
    "1, 2, 3", "3,2,1", "1,2", r"10\%", "10", "(1,2)", "(2,1)", "070", "70", r"x \geq 5", "5",
]  # fmt: skip


def test_vote_classes_never_merge_what_grading_tells_apart():
    grade = get_grader("math")
    cls = {a: vote_class(normalize_answer(a)) for a in VOTE_POOL}
    for a, b in itertools.permutations(VOTE_POOL, 2):
        if cls[a] == cls[b]:
            assert grade(a, normalize_answer(b)), (a, b, cls[a])


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("32, 349", "32349", False),
        ("32,349", "32349", True),
        ("0.5", r"\frac{1}{2}", True),
        ("1, 2, 3", "3,2,1", True),
        ("1, 2, 3", "1,2", False),
        ("(1,2)", "(2,1)", False),  # a tuple is ordered
        (r"10\%", "10", True),
        ("070", "70", True),
    ],
)
def test_vote_classes(a, b, same):
    assert (vote_class(normalize_answer(a)) == vote_class(normalize_answer(b))) is same


def test_answer_classes_from_grading_keep_lists_apart_from_numbers():
    texts = [r"\boxed{32, 349}", r"\boxed{32,349}", r"\boxed{32349}", r"\boxed{0.5}",
             r"\boxed{\frac{1}{2}}"]  # fmt: skip
    frame = pd.DataFrame({"problem_id": ["p"] * len(texts), "text": texts})
    graded, _ = grade_samples(
        frame, {"p": "32349"}, extractor="boxed", grader="math", cache_dir=None, workers=0
    )
    assert graded["correct"].tolist() == [False, True, True, False, False]
    assert graded["answer_class"].tolist() == ["{32, 349}", "32349", "32349", "1/2", "1/2"]


# --------------------------------------------------------------------------- real solutions


def test_math500_solutions_stay_correct_behind_a_thinking_block():
    path = DATASETS / "math500.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    rows = [json.loads(line) for line in path.open()]
    # a box tried while thinking, never the answer: the solution after </think> is
    texts = [f"<think>First guess: \\boxed{{-17}}.</think>\n{r['solution']}" for r in rows]
    frame = pd.DataFrame({"problem_id": [r["id"] for r in rows], "text": texts})
    graded, stats = grade_samples(
        frame, {r["id"]: r["answer"] for r in rows}, extractor="boxed", grader="math",
        cache_dir=None,
    )  # fmt: skip
    assert graded.loc[~graded["correct"], "problem_id"].tolist() == []
    assert stats.timeouts == 0 and stats.errors == 0


# --------------------------------------------------------------------------- the agreement benchmark


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_extraction_agreement", ROOT / "scripts" / "bench_extraction_agreement.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_agreement_benchmark_reads_cases_and_their_options(tmp_path):
    # A suite in the layout the benchmark reads: parametrized cases, a helper call
    # with or without non-default options, and a direct parse/verify test.
    (tmp_path / "test_all.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('gold,pred,expected', [('$1$', 'so $1$', 1), ('$2$', '3', 0)])\n"
        "def test_a(gold, pred, expected):\n"
        "    assert compare_strings(gold, pred, match_types=['latex', 'expr']) == expected\n"
        "@pytest.mark.parametrize('gold,pred,expected', [('$1$', '1', 1)])\n"
        "def test_b(gold, pred, expected):\n"
        "    assert compare_strings(gold, pred, match_types=['latex']) == expected\n"
        "@pytest.mark.parametrize('gold, pred, expected, precision', [('$1$', '1', 1, 6),\n"
        "                          ('$1$', '1.001', 1, 2)])\n"
        "def test_c(gold, pred, expected, precision):\n"
        "    assert compare_strings(gold, pred, precision=precision) == expected\n"
        "@pytest.mark.parametrize('gold, pred, result', [('$4$', '$4$', 1)])\n"
        "def test_d(gold, pred, result):\n"
        "    assert int(verify(parse(gold), parse(pred))) == result\n"
    )
    bench = _bench_module()
    cases = bench.load_cases(tmp_path)
    assert [(c.test, c.gold, c.pred, c.expected, c.default, c.kind) for c in cases] == [
        ("test_a", "$1$", "so $1$", True, True, "compare_strings"),
        ("test_a", "$2$", "3", False, True, "compare_strings"),
        ("test_b", "$1$", "1", True, False, "compare_strings"),
        ("test_c", "$1$", "1", True, True, "compare_strings"),
        ("test_c", "$1$", "1.001", True, False, "compare_strings"),
        ("test_d", "$4$", "$4$", True, True, "verify"),
    ]
    graded = bench.grade([c for c in cases if c.default], workers=0, timeout_s=10)
    assert graded["correct"].tolist() == [True, False, True, True]
