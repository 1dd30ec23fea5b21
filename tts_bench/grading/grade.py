r"""Grade a table of generations: one row per sample in, the same rows with grades out.

    graded, stats = grade_samples(
        samples,                      # columns problem_id, text (others kept as they are)
        {"p1": r"\frac{1}{2}"},       # gold answer per problem_id
        extractor="boxed",
        grader="math",
        cache_dir=Path("results/grade_cache"),
    )
    graded[["extracted", "answer_class", "correct", "grade_status"]]

Samples of one problem repeat themselves: with 64 samples a problem usually
has a handful of distinct final answers. Each distinct (gold, normalized
answer) pair is graded once (first the cache, then the worker pool) and the
verdict is spread back over the samples, which is what makes symbolic
grading of large sample pools affordable.

``answer_class`` is what majority voting counts: the vote class of the
normalized answer (``extract.vote_class``: equal numbers in any form are one
class, a list of numbers is the set it is graded as), except that every
correct sample of a problem gets the gold's class, so "0.5", "\frac12" and
"1/2" vote together when the gold is 1/2.

This is the per-generation level of scoring; reductions per problem and
aggregates live in ``tts_bench.metrics``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from tts_bench.grading.cache import GradeCache
from tts_bench.grading.extract import get_extractor, normalize_answer, vote_class
from tts_bench.grading.graders import get_grader
from tts_bench.grading.pool import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, grade_pairs

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

STATUS_NO_ANSWER = "no_answer"
GRADE_COLUMNS = ("extracted", "answer_class", "correct", "grade_status")
_REQUIRED = ("problem_id", "text")


@dataclass(frozen=True)
class GradeStats:
    """What one ``grade_samples`` call did; the run manifest records it."""

    samples: int  # rows graded
    distinct_pairs: int  # distinct (gold, normalized answer) pairs among rows with an answer
    cache_hits: int  # distinct pairs answered by the cache
    grader_calls: int  # distinct pairs sent to the grader (distinct_pairs - cache_hits)
    timeouts: int  # distinct pairs whose grade is a timeout (fresh or cached)
    errors: int  # distinct pairs whose grader failed or whose worker died (fresh or cached)
    seconds: float  # wall time of the call
    no_answer: int = 0  # rows with no extractable answer
    extractor: str = ""
    grader: str = ""
    grader_version: str = ""


def grade_samples(
    samples: pd.DataFrame,
    gold: dict[str, str],
    *,
    extractor: str,
    grader: str,
    cache_dir: Path | None,
    workers: int = 2,
    timeout_s: float = 10.0,
    retry_failed: bool = False,
    chunk_size: int = 16,
    answers: Sequence[str | None] | None = None,
) -> tuple[pd.DataFrame, GradeStats]:
    """Extract, normalize and grade every sample; return a new frame and stats.

    Adds the columns ``extracted`` (str | None: the answer as extracted),
    ``answer_class`` (str | None), ``correct`` (bool) and ``grade_status``
    ("ok" | "no_answer" | "timeout" | "error"); a timeout or error counts as
    not correct. ``samples`` is not modified. ``gold`` maps problem_id (or its
    ``str``) to the gold answer; a problem without gold raises ``KeyError``.
    ``cache_dir=None`` grades without a cache; ``retry_failed`` regrades pairs
    the cache holds as timeouts or errors. ``workers=0`` grades in-process
    without timeouts (debugging). ``answers``: the extractor's output per row,
    when the caller extracted it where the texts are (:func:`extract_stored`);
    ``samples`` then needs no ``text`` column.
    """
    import numpy as np
    import pandas as pd

    start = time.perf_counter()
    missing = [c for c in _REQUIRED if c not in samples.columns and not (c == "text" and answers is not None)]
    if missing:
        raise ValueError(f"samples lacks column(s) {', '.join(missing)}")
    get_extractor(extractor)  # an unknown name fails before any work
    g = get_grader(grader)

    n_rows = len(samples)
    codes, uniques = pd.factorize(samples["problem_id"])
    if (codes < 0).any():  # a missing problem id: let _gold_per_row name it
        golds = _gold_per_row(samples["problem_id"].tolist(), gold)
    else:  # one gold string per problem, shared by its rows (5M rows: no 5M strings)
        per_problem = _gold_per_row(list(uniques), gold)
        golds = [per_problem[c] for c in codes.tolist()]

    extracted: list[str | None] = []
    normalized: list[str | None] = []
    norm_memo: dict[str, tuple[str, str]] = {}  # raw -> (one shared copy of raw, normalized)
    if answers is not None and len(answers) != n_rows:
        raise ValueError(f"answers has {len(answers)} entries for {n_rows} samples")
    raws = answers if answers is not None else extract_answers(samples["text"], extractor, workers=workers)
    for raw in raws:
        norm = None
        if raw is not None:
            hit = norm_memo.get(raw)
            if hit is None:
                hit = norm_memo[raw] = (raw, normalize_answer(raw))
            raw, norm = hit
        if not norm:  # nothing, or nothing left once presentation is removed
            raw = norm = None
        extracted.append(raw)
        normalized.append(norm)

    pairs = list(
        dict.fromkeys((gd, norm) for gd, norm in zip(golds, normalized) if norm is not None)
    )
    cache = GradeCache(cache_dir) if cache_dir is not None else None
    verdicts: dict[tuple[str, str], tuple[bool, str]] = {}
    todo: list[tuple[str, str]] = []
    for pair in pairs:
        hit = cache.get(g.name, g.version, *pair, retry_failed=retry_failed) if cache else None
        if hit is None:
            todo.append(pair)
        else:
            verdicts[pair] = (hit.correct, hit.status)

    results = grade_pairs(g.name, todo, workers=workers, timeout_s=timeout_s, chunk_size=chunk_size)
    for pair, r in zip(todo, results):
        verdicts[pair] = (r.correct, r.status)
        if cache is not None:
            cache.put(g.name, g.version, *pair, correct=r.correct, status=r.status)
    if cache is not None:
        cache.flush()
    _log_failures(g.name, todo, results)

    gold_class: dict[str, str] = {}
    class_memo: dict[str, str] = {}
    correct = np.zeros(n_rows, dtype=bool)
    status: list[str] = []
    answer_class: list[str | None] = []
    for i, (gd, norm) in enumerate(zip(golds, normalized)):
        if norm is None:
            status.append(STATUS_NO_ANSWER)
            answer_class.append(None)
            continue
        ok, st = verdicts[(gd, norm)]
        correct[i] = ok and st == STATUS_OK
        status.append(st)
        if correct[i]:
            cls = gold_class.get(gd)
            if cls is None:
                cls = gold_class[gd] = vote_class(normalize_answer(gd) or gd)
            answer_class.append(cls)
        else:
            # Equal numbers in other forms vote together, as right answers do.
            cls = class_memo.get(norm)
            if cls is None:
                cls = class_memo[norm] = vote_class(norm)
            answer_class.append(cls)

    out = samples.copy(deep=False)  # new columns only: the sample columns are shared, not copied
    out["extracted"] = pd.Series(extracted, index=out.index, dtype=object)
    out["answer_class"] = pd.Series(answer_class, index=out.index, dtype=object)
    out["correct"] = pd.Series(correct, index=out.index, dtype=bool)
    out["grade_status"] = pd.Series(status, index=out.index, dtype=object)

    pair_status = [verdicts[p][1] for p in pairs]
    stats = GradeStats(
        samples=n_rows,
        distinct_pairs=len(pairs),
        cache_hits=len(pairs) - len(todo),
        grader_calls=len(todo),
        timeouts=pair_status.count(STATUS_TIMEOUT),
        errors=pair_status.count(STATUS_ERROR),
        seconds=time.perf_counter() - start,
        no_answer=status.count(STATUS_NO_ANSWER),
        extractor=extractor,
        grader=g.name,
        grader_version=g.version,
    )
    return out, stats


#: Texts handed to an extraction worker at once (about 30 MB of reasoning text).
EXTRACT_CHUNK = 100_000
#: Fewer texts than this are extracted in this process: starting workers (about
#: a second) costs more than they save.
PARALLEL_EXTRACT_MIN = 20_000


def extract_answers(texts: pd.Series, extractor: str, *, workers: int = 2) -> Iterator[str | None]:
    """The extractor's answer for each text (None: none, or not a string), in order.

    Texts are turned into Python strings a chunk at a time, so 5M texts never
    exist as 5M Python objects at once. From ``PARALLEL_EXTRACT_MIN`` texts
    and ``workers`` >= 2 the chunks go to ``workers`` processes (extraction
    is pure Python: one core each), as Arrow arrays, which cross a pipe as
    buffers rather than pickled strings.
    """
    get_extractor(extractor)  # an unknown name fails here
    n = len(texts)
    chunks = [texts.iloc[lo:lo + EXTRACT_CHUNK] for lo in range(0, n, EXTRACT_CHUNK)]
    if workers < 2 or n < PARALLEL_EXTRACT_MIN:
        for chunk in chunks:
            yield from _extract_chunk(extractor, chunk.tolist())
        return
    import pyarrow as pa

    def compact(chunk):
        arr = pa.Array.from_pandas(chunk)
        parts = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        # concat_arrays compacts the slice: a pickled slice carries its whole parent buffer.
        return pa.concat_arrays(parts)

    jobs = ((None, _extract_chunk, extractor, compact(c)) for c in chunks)
    for _, answers in _in_workers(workers, jobs):
        yield from answers


def extract_stored(aligned, extractor: str, *, workers: int = 2) -> list[str | None]:
    """The extractor's answer for each row of ``aligned`` (a :class:`tts_bench.store.Aligned`).

    The texts are read where they are stored, one file at a time (by
    ``workers`` processes from ``PARALLEL_EXTRACT_MIN`` rows), so a run's
    texts never all sit in memory: peak memory does not grow with the length
    of the chains of thought.
    """
    get_extractor(extractor)
    out: list[str | None] = [None] * len(aligned.rows)
    if workers < 2 or len(out) < PARALLEL_EXTRACT_MIN:
        for pos, texts in aligned.column_by_file("text"):
            for i, a in zip(pos.tolist(), _extract_chunk(extractor, texts)):
                out[i] = a
        return out
    store = aligned.store
    jobs = ((pos, _extract_file, extractor, type(store), store.root, aligned.model_fp, path, keys, local)
            for path, keys, pos, local in aligned.by_file())
    for pos, answers in _in_workers(workers, jobs):
        for i, a in zip(pos.tolist(), answers):
            out[i] = a
    return out


def _in_workers(workers: int, jobs: Iterable[tuple]) -> Iterator[tuple]:
    """(tag, fn(*args)) for each job (tag, fn, *args), in job order, run by ``workers`` processes.

    At most 2 x workers jobs are in flight, and ``jobs`` is only advanced as
    one finishes (``map`` would build and queue every job's texts at once).
    """
    from concurrent.futures import ProcessPoolExecutor

    from tts_bench.grading.pool import _context

    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as ex:
        pending: deque = deque()
        for tag, fn, *args in jobs:
            pending.append((tag, ex.submit(fn, *args)))
            if len(pending) >= 2 * workers:
                tag_done, fut = pending.popleft()
                yield tag_done, fut.result()
        while pending:
            tag_done, fut = pending.popleft()
            yield tag_done, fut.result()


def _extract_file(extractor: str, store_cls, root, model_fp: str, path, keys, local) -> list[str | None]:
    import pyarrow as pa

    texts = store_cls(root).column_of(model_fp, path, keys, "text").take(pa.array(local))
    return _extract_chunk(extractor, texts)


def _extract_chunk(extractor: str, texts) -> list[str | None]:
    extract = get_extractor(extractor)
    if not isinstance(texts, list):
        texts = texts.to_pylist()
    return [extract(t) if isinstance(t, str) else None for t in texts]


def _gold_per_row(problem_ids: list, gold: dict[str, str]) -> list[str]:
    out = []
    absent = []
    for pid in problem_ids:
        answer = gold.get(pid)
        if answer is None:
            answer = gold.get(str(pid))
        if answer is None:
            absent.append(pid)
            answer = ""
        out.append(str(answer))
    if absent:
        unique = list(dict.fromkeys(absent))
        shown = ", ".join(repr(p) for p in unique[:5])
        more = f" and {len(unique) - 5} more" if len(unique) > 5 else ""
        raise KeyError(f"no gold answer for problem_id {shown}{more}")
    return out


def _log_failures(grader: str, pairs: list[tuple[str, str]], results: list) -> None:
    failed = [(p, r) for p, r in zip(pairs, results) if r.status != STATUS_OK]
    if not failed:
        return
    (gold, answer), r = failed[0]
    logger.warning(
        "grader %s: %d of %d pairs failed (timeouts/errors count as wrong); first: "
        "gold=%.80r answer=%.80r -> %s (%s)",
        grader,
        len(failed),
        len(pairs),
        gold,
        answer,
        r.status,
        r.detail,
    )
