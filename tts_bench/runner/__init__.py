"""Run experiments: generate what the store lacks, then grade, measure, report.

    from tts_bench.runner import run_experiment, evaluate
"""

from .generate import GenerationStats, generate_missing
from .pipeline import RunResult, collect_samples, evaluate, read_manifest, run_experiment, run_name

__all__ = [
    "GenerationStats",
    "RunResult",
    "collect_samples",
    "evaluate",
    "generate_missing",
    "read_manifest",
    "run_experiment",
    "run_name",
]
