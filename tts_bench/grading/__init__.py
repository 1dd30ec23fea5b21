r"""Grading: one verdict per generation (extracted answer, answer class, correct or not).

    from tts_bench.grading import grade_samples

    graded, stats = grade_samples(samples, gold, extractor="boxed", grader="math",
                                  cache_dir=Path("results/grade_cache"), workers=2, timeout_s=10)

Stages, one module each: ``extract`` (text -> answer, ``normalize_answer``),
``graders`` (gold, answer -> bool, registered by name and version), ``pool``
(worker processes with a per-item timeout), ``cache`` (Parquet shards keyed by
grader, version, gold and normalized answer), ``grade`` (the DataFrame entry
point that ties them together and grades each distinct pair once).
"""

from tts_bench.grading.cache import CachedGrade, CacheShardWarning, GradeCache
from tts_bench.grading.extract import (
    canonical_number,
    extract_answer,
    extractor,
    get_extractor,
    list_extractors,
    normalize_answer,
)
from tts_bench.grading.grade import GRADE_COLUMNS, GradeStats, grade_samples
from tts_bench.grading.graders import Grader, get_grader, grader, list_graders
from tts_bench.grading.pool import PairResult, grade_pairs

__all__ = [
    "GRADE_COLUMNS",
    "CacheShardWarning",
    "CachedGrade",
    "GradeCache",
    "GradeStats",
    "Grader",
    "PairResult",
    "canonical_number",
    "extract_answer",
    "extractor",
    "get_extractor",
    "get_grader",
    "grade_pairs",
    "grade_samples",
    "grader",
    "list_extractors",
    "list_graders",
    "normalize_answer",
]
