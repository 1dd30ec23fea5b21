"""Tests for tts_bench.grading: extraction, normalization, graders, the pool, the cache.

Real rows from /work/shared/datasets are used where the behaviour depends on
real gold answers; those tests skip when the files are absent.

    python -m pytest tests/test_grading.py -q
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tts_bench.grading import (
    CacheShardWarning,
    GradeCache,
    canonical_number,
    extract_answer,
    get_extractor,
    get_grader,
    grade_pairs,
    grade_samples,
    list_graders,
    normalize_answer,
)
from tts_bench.grading import graders as graders_module

DATASETS = Path("/work/shared/datasets")


def _rows(name: str) -> list[dict]:
    path = DATASETS / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    with open(path) as f:
        return [json.loads(line) for line in f]


def _frame(pairs: list[tuple[str, str]], **extra) -> pd.DataFrame:
    """A samples frame from (problem_id, text) pairs."""
    return pd.DataFrame(
        {"problem_id": [p for p, _ in pairs], "text": [t for _, t in pairs], **extra}
    )


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"nested: \boxed{\frac{\sqrt{3}}{2}} done", r"\frac{\sqrt{3}}{2}"),
        (r"set \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"first \boxed{3} then, corrected, \boxed{4}", "4"),
        (r"\fbox{42}", "42"),
        (r"\boxed {7}", "7"),
        (r"\boxed 7 is it", "7"),
        (r"complete \boxed{5} then truncated \boxed{\frac{1", "5"),
        (r"empty \boxed{} ignored, earlier \boxed{9}", "9"),
        (r"The answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
        ("Final Answer: The final answer is $42$. I hope it is correct.", "42"),
        ("**Final Answer:** 12", "12"),
        ("We get 3 apples, then 1,234 more.", "1,234"),
        ("then x = -2.5 remains", "-2.5"),
        ("I do not know.", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_answer(text, "boxed") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16 - 3 - 4 = <<16-3-4=9>>9 eggs\n#### 18", "18"),
        ("#### 1,800", "1800"),
        ("#### $1,800.00", "1800"),
        (r"so she pays \boxed{\$18.50}", "18.5"),
        ("The answer is 72 dollars.", "72"),
        ("first 5, then 12, finally -3", "-3"),
        ("no number here", None),
    ],
)
def test_extract_gsm8k(text, expected):
    assert extract_answer(text, "gsm8k") == expected


def test_extract_gsm8k_on_every_real_solution():
    rows = _rows("gsm8k_test")
    wrong = [r["id"] for r in rows if extract_answer(r["solution"], "gsm8k") != r["answer"]]
    assert wrong == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is (C).", "C"),
        ("Answer: B", "B"),
        ("Answer: **D**", "D"),
        (r"\boxed{A}", "A"),
        (r"\boxed{\text{(C)}}", "C"),
        ("(A) fails, (B) fails, so it must be (D)", "D"),
        ("The options were weighed.\nC\n", "C"),
        ("A bag holds 3 red balls.", None),
        ("no letter", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_answer(text, "choice") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the total is -1,234.50 units", "-1234.5"),
        ("x = -5.", "-5"),
        ("3 - 5 leaves", "5"),
        ("0.50", "0.5"),
        ("nothing", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_answer(text, "number") == expected


def test_unknown_extractor_names_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown extractor 'nope'; known: boxed, choice"):
        get_extractor("nope")


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("$0.5$", "0.5"),
        ("1,000", "1000"),
        ("1{,}000", "1000"),
        (r"1\,000", "1000"),
        ("-0", "0"),
        ("5.", "5"),
        ("{5}", "5"),
        (r"\$18.00", "18"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\tfrac12", r"\frac12"),
        (r"\text{Evelyn}", "Evelyn"),
        (r"\text{(C)}", "(C)"),
        (r"5.4 \text{ cents}", "5.4"),
        (r"15\mbox{ cm}^2", "15"),
        (r"90^\circ", "90"),
        (r"\(\frac12\)", r"\frac12"),
        # meaning-bearing details survive
        ("1,2", "1,2"),  # a list, not one thousand two
        ("1,2,...", "1,2,..."),
        (r"2\pi r", r"2\pi r"),  # "\pir" would be another command
        (r"\cot x", r"\cot x"),
        (r"x\rightarrow 3", r"x\rightarrow3"),
        (r"\begin{pmatrix} -2 \\ -14 \end{pmatrix}", r"\begin{pmatrix}-2\\-14\end{pmatrix}"),
        ("{a}+{b}", "{a}+{b}"),
        (None, ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_is_idempotent_on_real_golds():
    golds = [r["answer"] for r in _rows("math500")]
    assert [g for g in golds if normalize_answer(normalize_answer(g)) != normalize_answer(g)] == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1,234", "1234"), ("007", "7"), ("+3.", "3"), ("-0.0", "0"), ("1,23", None), ("x", None)],
)
def test_canonical_number(raw, expected):
    assert canonical_number(raw) == expected


# --------------------------------------------------------------------------- graders


@pytest.mark.parametrize(
    ("gold", "answer", "expected"),
    [
        # gold answers as they appear in MATH500
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\pi/2)", True),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\pi)", False),
        (r"\frac{14}{3}", "14/3", True),
        (r"\frac{14}{3}", r"4\frac{2}{3}", True),
        (r"\frac{14}{3}", "4.67", False),
        (r"\frac{14}{3}", r"\frac{3}{14}", False),
        ("0.5", r"\frac12", True),
        ("0.5", ".5", True),
        ("0.5", "0.6", False),
        (r"\$32,\!348", "32348", True),
        (r"\$18.90", "18.9", True),
        (r"\text{Evelyn}", "Evelyn", True),
        (r"90^\circ", "90", True),
        ("3, 5, 7", "7,5,3", True),
        (
            r"\begin{pmatrix} -2 \\ -14 \\ -7 \end{pmatrix}",
            r"\begin{pmatrix}-2\\-14\\-7\end{pmatrix}",
            True,
        ),
        (
            r"\begin{pmatrix} -2 \\ -14 \\ -7 \end{pmatrix}",
            r"\begin{pmatrix}-2\\-14\\7\end{pmatrix}",
            False,
        ),
        ("18", "18", True),
        ("18", "19", False),
    ],
)
def test_math_grader(gold, answer, expected):
    assert get_grader("math")(gold, normalize_answer(answer)) is expected


def test_math_grader_accepts_every_real_gold_in_its_normalized_form():
    # Normalization must not change what an answer means to the math grader:
    # each gold, normalized and re-parsed as an answer, still equals itself.
    from math_verify import parse, verify

    grade = graders_module._parse_gold
    for row in _rows("math500"):
        pred = parse(f"\\boxed{{{normalize_answer(row['answer'])}}}", parsing_timeout=None)
        assert verify(grade(row["answer"]), pred, timeout_seconds=None), row["answer"]


def test_choice_and_exact_graders():
    choice, exact = get_grader("choice"), get_grader("exact")
    assert choice("(C)", "C") and choice(r"\text{(C)}", "c") and not choice("C", "D")
    assert not choice("C", "")
    assert exact("0.50", "0.5") and exact(r"\dfrac{1}{2}", r"\frac{1}{2}")
    assert not exact("1/2", "0.5")


def test_graders_have_versions_and_private_ones_are_unlisted():
    assert {"math", "choice", "exact"} <= set(list_graders())
    assert not [n for n in list_graders() if n.startswith("_")]
    assert get_grader("math").version.startswith("2/math-verify-")
    assert get_grader("_test_sleep").name == "_test_sleep"  # reachable by name
    with pytest.raises(KeyError, match=r"unknown grader 'nope'; known: choice, exact, math"):
        get_grader("nope")


# --------------------------------------------------------------------------- grade_samples


def test_grade_samples_grades_each_distinct_pair_once():
    # 1,000 samples of one problem, 9 surface forms, 5 distinct normalized answers:
    # 0.5 (also 0.50, .5) | \frac{1}{2} (also \dfrac{1}{2}) | \frac12 | 2 (also 2.0) | 0.25
    forms = [
        ("0.5", True), (r"\frac{1}{2}", True), (r"\frac12", True),
        ("0.50", True), (".5", True), (r"\dfrac{1}{2}", True),
        ("2", False), ("2.0", False), ("0.25", False),
    ]  # fmt: skip
    texts = [f"Working... so $\\boxed{{{forms[i % len(forms)][0]}}}$" for i in range(1000)]
    samples = _frame([("p1", t) for t in texts])
    graded, stats = grade_samples(
        samples, {"p1": r"\frac{1}{2}"}, extractor="boxed", grader="math", cache_dir=None
    )
    assert stats.distinct_pairs == 5
    assert stats.grader_calls == 5
    assert stats.samples == 1000
    assert graded["correct"].tolist() == [forms[i % len(forms)][1] for i in range(1000)]


def test_grade_samples_dedup_counts_real_calls(monkeypatch):
    calls = []

    def counting(gold: str, answer: str) -> bool:
        calls.append((gold, answer))
        return answer == gold

    monkeypatch.setitem(
        graders_module._GRADERS, "_count", graders_module.Grader("_count", "t", counting)
    )
    answers = ["7", "8", "9", "10", "11"]
    samples = _frame([("p", f"... \\boxed{{{answers[i % 5]}}}") for i in range(1000)])
    graded, stats = grade_samples(
        samples, {"p": "9"}, extractor="boxed", grader="_count", cache_dir=None, workers=0
    )
    assert len(calls) == 5 and stats.grader_calls == 5
    assert graded["correct"].sum() == 200


def test_grade_samples_columns_classes_and_no_mutation():
    samples = _frame(
        [
            ("a", r"so \boxed{0.5}"),
            ("a", r"so \boxed{\frac{1}{2}}"),
            ("a", r"so \boxed{\frac{1}{3}}"),
            ("a", "I am not sure."),
            ("b", r"\boxed{\text{(C)}}"),
            ("b", r"\boxed{$\$$}"),  # an answer that is only presentation
        ],
        sample_index=[0, 1, 2, 3, 0, 1],
    )
    samples.index = [10, 11, 12, 13, 14, 15]
    before = samples.copy()
    graded, stats = grade_samples(
        samples, {"a": "0.5", "b": r"\text{(C)}"}, extractor="boxed", grader="math",
        cache_dir=None,
    )  # fmt: skip
    pd.testing.assert_frame_equal(samples, before)
    assert list(graded.columns) == [
        "problem_id", "text", "sample_index", "extracted", "answer_class", "correct",
        "grade_status",
    ]  # fmt: skip
    assert graded.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert graded["extracted"].tolist() == [
        "0.5", r"\frac{1}{2}", r"\frac{1}{3}", None, r"\text{(C)}", None,
    ]  # fmt: skip
    # correct forms vote together under the normalized gold; wrong ones keep their own
    # classes are vote classes: equal numbers share one (gold 0.5 -> "1/2")
    assert graded["answer_class"].tolist() == ["1/2", "1/2", "1/3", None, "(C)", None]
    assert graded["correct"].tolist() == [True, True, False, False, True, False]
    assert graded["grade_status"].tolist() == ["ok", "ok", "ok", "no_answer", "ok", "no_answer"]
    assert graded["correct"].dtype == bool
    assert stats.no_answer == 2 and stats.grader == "math" and stats.extractor == "boxed"


def test_grade_samples_errors_are_explicit():
    with pytest.raises(ValueError, match=r"samples lacks column\(s\) text"):
        grade_samples(
            pd.DataFrame({"problem_id": ["a"]}), {"a": "1"}, extractor="boxed",
            grader="math", cache_dir=None,
        )  # fmt: skip
    with pytest.raises(KeyError, match=r"no gold answer for problem_id 'zz'"):
        grade_samples(
            _frame([("zz", "1")]), {"a": "1"}, extractor="boxed", grader="math", cache_dir=None
        )


def test_grade_samples_real_math500_solutions_are_all_correct():
    rows = _rows("math500")
    samples = _frame([(r["id"], r["solution"]) for r in rows])
    graded, stats = grade_samples(
        samples, {r["id"]: r["answer"] for r in rows}, extractor="boxed", grader="math",
        cache_dir=None,
    )  # fmt: skip
    assert graded["correct"].all()
    assert stats.timeouts == 0 and stats.errors == 0


# --------------------------------------------------------------------------- cache


def _cache_case() -> tuple[pd.DataFrame, dict[str, str]]:
    answers = ["14/3", r"\frac{14}{3}", "4", "5", r"\frac{28}{6}"]
    samples = _frame([("p", f"thus \\boxed{{{answers[i % 5]}}}") for i in range(200)])
    return samples, {"p": r"\frac{14}{3}"}


def test_cache_second_call_makes_no_grader_calls(tmp_path):
    samples, gold = _cache_case()
    first, s1 = grade_samples(samples, gold, extractor="boxed", grader="math", cache_dir=tmp_path)
    second, s2 = grade_samples(samples, gold, extractor="boxed", grader="math", cache_dir=tmp_path)
    assert (s1.grader_calls, s1.cache_hits) == (5, 0)
    assert (s2.grader_calls, s2.cache_hits) == (0, 5)
    pd.testing.assert_frame_equal(first, second)
    assert len(list(tmp_path.glob("grades-*.parquet"))) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_damaged_shard_is_quarantined_and_regraded(tmp_path, damage):
    samples, gold = _cache_case()
    first, _ = grade_samples(samples, gold, extractor="boxed", grader="math", cache_dir=tmp_path)
    (shard,) = tmp_path.glob("grades-*.parquet")
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        i = len(data) // 2
        shard.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    else:
        shard.write_bytes(b"not parquet at all")
    with pytest.warns(CacheShardWarning, match=rf"{shard.name} is damaged"):
        again, stats = grade_samples(
            samples, gold, extractor="boxed", grader="math", cache_dir=tmp_path
        )
    assert stats.grader_calls == 5 and stats.cache_hits == 0
    pd.testing.assert_frame_equal(first, again)
    assert (tmp_path / "quarantine" / shard.name).exists()
    assert not shard.exists()
    # the regraded results were written to a fresh, healthy shard
    assert len(GradeCache(tmp_path)) == 5


def test_cache_keys_include_grader_version(tmp_path):
    cache = GradeCache(tmp_path)
    cache.put("math", "v1", "1", "1", correct=True, status="ok")
    cache.flush()
    reloaded = GradeCache(tmp_path)
    assert reloaded.get("math", "v1", "1", "1").correct is True
    assert reloaded.get("math", "v2", "1", "1") is None


def test_cached_timeouts_are_kept_unless_retry_failed(tmp_path):
    samples = _frame([("p", r"\boxed{HANG}"), ("p", r"\boxed{1}")])
    kw = {"extractor": "boxed", "grader": "_test_sleep", "cache_dir": tmp_path, "timeout_s": 0.5}
    first, s1 = grade_samples(samples, {"p": "1"}, **kw)
    assert first["grade_status"].tolist() == ["timeout", "ok"] and s1.timeouts == 1
    again, s2 = grade_samples(samples, {"p": "1"}, **kw)
    assert (s2.grader_calls, s2.cache_hits, s2.timeouts) == (0, 2, 1)
    assert again["grade_status"].tolist() == ["timeout", "ok"]
    _, s3 = grade_samples(samples, {"p": "1"}, retry_failed=True, **kw)
    assert (s3.grader_calls, s3.cache_hits) == (1, 1)


def test_a_later_failure_never_replaces_a_verdict(tmp_path):
    cache = GradeCache(tmp_path)
    cache.put("g", "1", "2", "2", correct=True, status="ok")
    cache.flush()
    cache.put("g", "1", "2", "2", correct=False, status="timeout")
    cache.flush()
    assert GradeCache(tmp_path).get("g", "1", "2", "2") == (True, "ok")


def test_cache_compacts_many_shards(tmp_path):
    cache = GradeCache(tmp_path, compact_at=4)
    for i in range(10):
        cache.put("g", "1", "gold", str(i), correct=i % 2 == 0, status="ok")
        cache.flush()
    assert len(list(tmp_path.glob("grades-*.parquet"))) < 4
    reloaded = GradeCache(tmp_path)
    assert len(reloaded) == 10 and reloaded.get("g", "1", "gold", "4").correct is True


# --------------------------------------------------------------------------- pool


def test_hanging_item_times_out_and_the_rest_is_graded():
    answers = [str(i) for i in range(40)]
    answers[17] = "HANG"
    samples = _frame([("p", f"\\boxed{{{a}}}") for a in answers])
    start = time.monotonic()
    graded, stats = grade_samples(
        samples, {"p": "3"}, extractor="boxed", grader="_test_sleep", cache_dir=None,
        workers=2, timeout_s=1.0,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert graded["grade_status"].tolist() == ["timeout" if a == "HANG" else "ok" for a in answers]
    assert graded["correct"].tolist() == [a == "3" for a in answers]
    assert stats.timeouts == 1 and stats.errors == 0
    assert elapsed < 30


def test_crashing_and_raising_items_are_errors_and_the_rest_is_graded():
    answers = [str(i) for i in range(30)]
    answers[5], answers[21] = "CRASH", "RAISE"
    samples = _frame([("p", f"\\boxed{{{a}}}") for a in answers])
    graded, stats = grade_samples(
        samples, {"p": "7"}, extractor="boxed", grader="_test_crash", cache_dir=None,
        workers=2, timeout_s=5.0,
    )  # fmt: skip
    expected = ["error" if a in ("CRASH", "RAISE") else "ok" for a in answers]
    assert graded["grade_status"].tolist() == expected
    assert graded["correct"].tolist() == [a == "7" for a in answers]
    assert stats.errors == 2


def test_pool_survives_several_hangs_and_crashes_in_one_chunk():
    pairs = [("1", a) for a in ["1", "HANG", "CRASH", "1", "HANG", "2", "RAISE", "SEGV", "1"]]
    hang = grade_pairs("_test_sleep", pairs, workers=1, timeout_s=0.5, chunk_size=9)
    assert [r.status for r in hang] == ["ok", "timeout", "ok", "ok", "timeout"] + ["ok"] * 4
    crash = grade_pairs("_test_crash", pairs, workers=1, timeout_s=5, chunk_size=9)
    assert [r.status for r in crash] == [
        "ok",
        "ok",
        "error",
        "ok",
        "ok",
        "ok",
        "error",
        "error",
        "ok",
    ]
    assert [r.correct for r in crash] == [
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert crash[2].detail == "worker died (exit code 70)"
    assert crash[6].detail == "RuntimeError: grader failure on purpose"
    assert crash[7].detail == "worker died (exit code -11)"


def test_in_process_mode_reports_errors():
    results = grade_pairs("_test_crash", [("1", "1"), ("1", "RAISE")], workers=0)
    assert [(r.correct, r.status) for r in results] == [(True, "ok"), (False, "error")]


def test_equal_numbers_in_other_forms_vote_together():
    # gold 2; wrong answers 1/2 in three forms must be one class of 4 votes,
    # so majority vote picks 1/2 (and maj@7 is 0, not 1).
    from tts_bench.grading import grade_samples

    texts = ["\\boxed{2}"] * 3 + ["\\boxed{\\frac{1}{2}}"] * 2 + ["\\boxed{0.5}", "\\boxed{1/2}"]
    samples = pd.DataFrame({"problem_id": ["p"] * 7, "sample_index": range(7), "text": texts,
                            "prompt_tokens": 5, "completion_tokens": 5, "finish_reason": "stop"})
    graded, _ = grade_samples(samples, {"p": "2"}, extractor="boxed", grader="math",
                              cache_dir=None, workers=0)
    assert graded["answer_class"].tolist() == ["2"] * 3 + ["1/2"] * 4
    from tts_bench.metrics import maj_at_k, reduce_per_problem

    row = reduce_per_problem(graded).iloc[0]
    assert maj_at_k(row["class_counts"], row["correct_class"], 7, 7).value == 0.0


def _texts(n: int) -> list:
    forms = ["so \\boxed{{{i}}}.", "The answer is {i}", "no answer here", None,
             "\\boxed{{\\frac{{{i}}}{{2}}}}"]
    return [forms[i % len(forms)].format(i=i) if forms[i % len(forms)] else None for i in range(n)]


def test_parallel_extraction_gives_every_answer_in_order(monkeypatch):
    from tts_bench.grading import grade as grade_module

    texts = _texts(2_345)
    serial = list(grade_module.extract_answers(pd.Series(texts, dtype=object), "boxed", workers=0))
    assert serial == [get_extractor("boxed")(t) if t is not None else None for t in texts]
    # Small chunks over 2 worker processes: order kept across chunk and window boundaries.
    monkeypatch.setattr(grade_module, "EXTRACT_CHUNK", 100)
    monkeypatch.setattr(grade_module, "PARALLEL_EXTRACT_MIN", 10)
    for series in (pd.Series(texts, dtype=object), pd.Series(texts, dtype="str")):
        assert list(grade_module.extract_answers(series, "boxed", workers=2)) == serial


def test_extraction_from_the_store_matches_extraction_of_the_texts(tmp_path, monkeypatch):
    import pyarrow as pa

    from tts_bench.grading import grade as grade_module
    from tts_bench.store import SCHEMA_VERSION, GenerationStore

    texts = _texts(600)
    rows = [{"key": f"k{i:04d}", "schema_version": SCHEMA_VERSION, "model_fp": "fp", "problem_id": "p",
             "sample_index": i, "text": t} for i, t in enumerate(texts)]
    store = GenerationStore(tmp_path, roll_rows=100)  # several files, journal included
    for lo in range(0, 600, 70):
        store.write_shard("fp", rows[lo:lo + 70])
    want = [f"k{i:04d}" for i in range(599, -1, -3)]  # another order than the store's
    aligned = GenerationStore(tmp_path).read_aligned("fp", pa.array(want), columns=["sample_index"])
    assert len(aligned.files) > 2
    expect = [get_extractor("boxed")(texts[int(k[1:])]) if texts[int(k[1:])] is not None else None
              for k in want]
    assert grade_module.extract_stored(aligned, "boxed", workers=0) == expect
    monkeypatch.setattr(grade_module, "PARALLEL_EXTRACT_MIN", 10)
    assert grade_module.extract_stored(aligned, "boxed", workers=2) == expect
