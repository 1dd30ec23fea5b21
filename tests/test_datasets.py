"""Tasks load the real data from the shared folder; selection and errors are exact."""

from __future__ import annotations

import csv

import pytest

from tts_bench.config import ConfigError, DatasetConfig
from tts_bench.dataset import list_tasks, load_problems, load_task


@pytest.mark.parametrize(
    "name,rows,first_id,first_answer",
    [
        ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("gsm8k", 1319, "gsm8k-test-0000", "18"),
        ("aime24", 30, "2024-I-1", "204"),
        ("aime25", 30, "2025-I-1", "70"),
    ],
)
def test_local_datasets(shared_data, name, rows, first_id, first_answer):
    problems = load_problems(DatasetConfig(name=name, data_dir=str(shared_data)))
    assert len(problems) == rows
    assert problems[0].id == first_id
    assert problems[0].answer == first_answer
    user = problems[0].messages[-1]
    assert user.role == "user" and problems[0].problem in user.content
    assert "\\boxed{}" in user.content


def test_limit_and_ids(shared_data):
    cfg = DatasetConfig(name="gsm8k", data_dir=str(shared_data), limit=3)
    assert [p.id for p in load_problems(cfg)] == [f"gsm8k-test-000{i}" for i in range(3)]
    cfg = DatasetConfig(name="aime24", data_dir=str(shared_data), ids=["2024-II-3", "2024-I-1"])
    assert [p.id for p in load_problems(cfg)] == ["2024-II-3", "2024-I-1"]


def test_unknown_ids_error(shared_data):
    cfg = DatasetConfig(name="aime24", data_dir=str(shared_data), ids=["2024-I-1", "nope"])
    with pytest.raises(ConfigError) as e:
        load_problems(cfg)
    assert str(e.value) == "dataset.ids: 1 id(s) not in aime24: nope"


def test_missing_data_dir_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as e:
        load_problems(DatasetConfig(name="math500", data_dir=str(missing)))
    assert str(e.value) == (
        f"data directory {missing} does not exist; set dataset.data_dir "
        f"(or TTS_BENCH_DATA_DIR) to a folder holding math500.jsonl"
    )


def test_missing_file_in_data_dir_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_problems(DatasetConfig(name="aime25", data_dir=str(tmp_path)))
    assert str(e.value) == (
        f"aime25.jsonl not found in data directory {tmp_path}; "
        f"put it there or unset dataset.data_dir to load from the hub"
    )


def test_unknown_task_error():
    with pytest.raises(ConfigError) as e:
        load_task("mmlu")
    assert str(e.value).startswith("unknown task 'mmlu'. Valid choices: aime24, aime25, arith")


def test_every_task_definition_loads():
    for name in list_tasks():
        t = load_task(name)
        assert t.extractor and t.grader and "{problem}" in t.prompt_user


def test_arith_generator_is_seeded_distinct_and_levelled():
    a = load_problems(DatasetConfig(name="arith", source="generated", size=30, seed=1,
                                    levels=[1, 2, 3, 4]))
    b = load_problems(DatasetConfig(name="arith", source="generated", size=30, seed=1,
                                    levels=[1, 2, 3, 4]))
    c = load_problems(DatasetConfig(name="arith", source="generated", size=30, seed=2,
                                    levels=[1, 2, 3, 4]))
    assert [p.problem for p in a] == [p.problem for p in b]
    assert [p.problem for p in a] != [p.problem for p in c]
    assert len({p.problem for p in a}) == 30
    assert {p.meta["level"] for p in a} == {1, 2, 3, 4}
    for p in a:  # the answer is the expression's value (evaluated here, in the test only)
        assert int(p.answer) == eval(p.problem.replace(" ", ""), {"__builtins__": {}})  # noqa: S307


def _fake_gpqa_csv(path):
    # Made-up rows with the real column names (the real data must never be committed).
    fields = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1",
              "Incorrect Answer 2", "Incorrect Answer 3", "High-level domain"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i in range(12):
            w.writerow({"Record ID": f"rec{i}", "Question": f"Which colour is item {i}?",
                        "Correct Answer": f"right{i}", "Incorrect Answer 1": f"w1-{i}",
                        "Incorrect Answer 2": f"w2-{i}", "Incorrect Answer 3": f"w3-{i}",
                        "High-level domain": "Test"})
    return path


def test_gpqa_choices_shuffled_deterministically(tmp_path):
    path = _fake_gpqa_csv(tmp_path / "gpqa_diamond.csv")
    a = load_problems(DatasetConfig(name="gpqa_diamond", path=str(path)))
    b = load_problems(DatasetConfig(name="gpqa_diamond", path=str(path)))
    assert [(p.problem, p.answer) for p in a] == [(p.problem, p.answer) for p in b]
    for i, p in enumerate(a):
        letter = p.answer
        assert f"{letter}) right{i}" in p.problem
        for lt in "ABCD":
            assert f"\n{lt}) " in p.problem
    assert len({p.answer for p in a}) > 1  # the correct answer is not always in one slot


def test_bad_gpqa_file_names_missing_column(tmp_path):
    path = tmp_path / "gpqa.csv"
    path.write_text("Question,Answer\nq,a\n")
    with pytest.raises(ConfigError) as e:
        load_problems(DatasetConfig(name="gpqa_diamond", path=str(path)))
    assert "has no column 'Record ID'" in str(e.value)
