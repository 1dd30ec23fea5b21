"""Shared fixtures: the real data folder, a scripted-engine script, a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """../shared/datasets, or $TTS_BENCH_DATA_DIR (CI sets it)."""
    env = os.environ.get("TTS_BENCH_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "datasets"]:
        if (cand / "math500.jsonl").is_file():
            return cand
    return None


@pytest.fixture
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("real data not found: set TTS_BENCH_DATA_DIR to shared/datasets")
    return d


def write_arith_script(path: Path, size: int = 6, seed: int = 0) -> Path:
    """A script for the scripted engine: per problem, a fixed mix of right and wrong answers.

    Problem i answers correctly on sample indices where (index + i) % 3 == 0,
    otherwise with one of two wrong answers, so pass@k and maj@k differ.
    """
    from tts_bench.config import DatasetConfig
    from tts_bench.dataset import load_problems

    problems = load_problems(DatasetConfig(name="arith", source="generated", size=size, seed=seed))
    lines = []
    for i, p in enumerate(problems):
        right, wrong1, wrong2 = p.answer, str(int(p.answer) + 1), str(int(p.answer) + 2)
        texts = [
            right if (j + i) % 3 == 0 else (wrong1 if j % 2 else f"The answer is {wrong2}.")
            for j in range(32)
        ]
        lines.append(json.dumps({"match": f"What is {p.problem}?", "texts": texts}))
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m tts_bench ARGS` as a real process."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "tts_bench", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc
