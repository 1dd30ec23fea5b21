"""Run experiments: the strategy on the cached call layer, then grade, measure, report.

    from tts_bench.runner import run_experiment, evaluate
"""

from .pipeline import RunResult, collect_samples, evaluate, read_manifest, run_experiment, run_name
from .rundir import GenerationStats, RunDir

__all__ = [
    "GenerationStats",
    "RunDir",
    "RunResult",
    "collect_samples",
    "evaluate",
    "read_manifest",
    "run_experiment",
    "run_name",
]
