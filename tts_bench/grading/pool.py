r"""Run a grader over many (gold, answer) pairs in worker processes, with a timeout per item.

A symbolic comparison can hang (sympy on an adversarial expression) or take
its process down (a segfault in a native extension). Either must cost the one
item, never the run::

    results = grade_pairs("math", [(r"\frac{1}{2}", "0.5"), ("3", "4")], workers=2, timeout_s=10)
    [r.status for r in results]   # ['ok', 'ok']; a hang gives 'timeout', a crash 'error'

Design. ``workers`` processes (forkserver context: forked from a clean server
that has already imported the graders, so a replacement worker starts in
milliseconds; spawn where forkserver is missing) each take a chunk of
``chunk_size`` items over a pipe and send one result back per item, in order.
The parent therefore always knows which item a worker is on, and the item's
clock restarts at each result it receives. When an item runs past
``timeout_s`` the parent kills that worker: the item gets status "timeout",
the rest of its chunk goes back to the front of the queue, a fresh worker
takes its place. A worker that dies (segfault, ``os._exit``) is handled the
same way with status "error". Because results stream per item, no chunk ever
has to be re-run one item at a time to find the culprit, and a hang costs
``timeout_s``, not ``chunk_size * timeout_s``.

Timing starts once a worker reports ready (imports done, grader warmed up),
so start-up is never charged to an item; a worker that cannot start within
``start_timeout_s`` is an environment problem and raises.

``workers=0`` grades in this process, without timeouts, for debugging.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait

from tts_bench.grading.graders import Grader, get_grader

STATUS_OK = "ok"
STATUS_TIMEOUT = "timeout"
STATUS_ERROR = "error"

_READY = "ready"
_MAX_START_FAILURES = 3
_DETAIL_CHARS = 500


@dataclass(frozen=True)
class PairResult:
    """The grade of one (gold, answer) pair."""

    correct: bool  # False unless status is "ok"
    status: str  # "ok" | "timeout" | "error"
    detail: str | None = None  # why, for "timeout" and "error"


def grade_pairs(
    grader: str,
    pairs: Sequence[tuple[str, str]],
    *,
    workers: int = 2,
    timeout_s: float = 10.0,
    chunk_size: int = 16,
    start_timeout_s: float = 120.0,
) -> list[PairResult]:
    """Grade each ``(gold, answer)`` pair with the grader named ``grader``.

    Returns one :class:`PairResult` per pair, in order. Never raises for an
    item's behaviour; raises ``KeyError`` for an unknown grader and
    ``RuntimeError`` when workers cannot be started at all.
    """
    g = get_grader(grader)  # fail here, not in a worker, on a bad name
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not pairs:
        return []
    if workers <= 0:
        return [_grade_in_process(g, gold, answer) for gold, answer in pairs]
    return _run_pool(g.name, pairs, workers, timeout_s, chunk_size, start_timeout_s)


def _grade_in_process(g: Grader, gold: str, answer: str) -> PairResult:
    try:
        return PairResult(g(gold, answer), STATUS_OK)
    except Exception as e:  # noqa: BLE001 - any grader failure is the item's, not the run's
        return PairResult(False, STATUS_ERROR, _describe(e))


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:_DETAIL_CHARS]


# --------------------------------------------------------------------------- worker side


def _worker_main(conn, grader_name: str) -> None:
    # Ctrl-C goes to the whole process group; the parent decides and kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    g = get_grader(grader_name)
    if g.warmup is not None:
        # A failing warm-up is not fatal: it shows up again on the real items.
        with contextlib.suppress(Exception):
            g(*g.warmup)
    conn.send(_READY)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for idx, gold, answer in chunk:
            try:
                msg = (idx, bool(g(gold, answer)), STATUS_OK, None)
            except BaseException as e:  # noqa: BLE001 - report, keep serving
                msg = (idx, False, STATUS_ERROR, _describe(e))
            conn.send(msg)


# --------------------------------------------------------------------------- parent side


def _context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Only takes effect if this process's fork server is not running yet;
        # modules that fail to import are skipped by the server. A forked
        # worker still re-runs the caller's main module (CPython 3.11 ignores
        # the "__main__" preload), so the imports such a module usually has
        # (pandas) are preloaded too: a replacement worker then starts in
        # milliseconds instead of re-importing them.
        ctx.set_forkserver_preload(
            ["__main__", "tts_bench.grading.graders", "math_verify", "pandas"]
        )
        return ctx
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, grader_name: str) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child, grader_name), name="tts-bench-grader", daemon=True
        )
        self.proc.start()
        child.close()
        self.conn = parent
        self.started = time.monotonic()
        self.ready = False
        self.pending: deque[int] = deque()  # item indices sent and not answered, in order
        self.deadline: float | None = None  # when the item now running times out
        self.stopped = False

    def drain(self, results: list[PairResult | None], timeout_s: float) -> bool:
        """Read every message waiting; True when the pipe reached end of file."""
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                if msg == _READY:
                    self.ready = True
                    continue
                idx, correct, status, detail = msg
                expected = self.pending.popleft()
                if idx != expected:  # the protocol is strictly in order
                    raise RuntimeError(f"grading worker answered item {idx}, expected {expected}")
                results[idx] = PairResult(correct, status, detail)
                self.deadline = time.monotonic() + timeout_s if self.pending else None
        except (EOFError, OSError):
            return True
        return False

    def ask_to_exit(self) -> None:
        """Tell an idle worker to return; ``stop`` then reaps it."""
        if not self.stopped:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)

    def stop(self, kill: bool) -> int | None:
        """Reap the process, killing it at once if ``kill``; returns its exit code."""
        if self.stopped:
            return self.proc.exitcode
        self.stopped = True
        if kill and self.proc.is_alive():
            self.proc.kill()
        self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)
        self.conn.close()
        return self.proc.exitcode


def _run_pool(
    grader_name: str,
    pairs: Sequence[tuple[str, str]],
    workers: int,
    timeout_s: float,
    chunk_size: int,
    start_timeout_s: float,
) -> list[PairResult]:
    ctx = _context()
    n = len(pairs)
    results: list[PairResult | None] = [None] * n
    queue: deque[list[int]] = deque(
        list(range(i, min(i + chunk_size, n))) for i in range(0, n, chunk_size)
    )
    started: list[_Worker] = []  # every worker ever started, for the final clean-up

    def start() -> _Worker:
        w = _Worker(ctx, grader_name)
        started.append(w)
        return w

    start_failures = 0
    finished = False
    try:
        pool = [start() for _ in range(min(workers, len(queue)))]
        while queue or any(w.pending for w in pool):
            for w in pool:
                if w.ready and not w.pending and queue:
                    chunk = queue.popleft()
                    try:
                        w.conn.send([(i, pairs[i][0], pairs[i][1]) for i in chunk])
                    except (OSError, ValueError):
                        queue.appendleft(chunk)  # it died idle; found below
                        continue
                    w.pending.extend(chunk)
                    w.deadline = time.monotonic() + timeout_s

            clocks = [w.deadline for w in pool if w.pending and w.deadline is not None]
            clocks += [w.started + start_timeout_s for w in pool if not w.ready]
            wait_s = max(0.0, min(clocks) - time.monotonic()) if clocks else None
            wait([w.conn for w in pool] + [w.proc.sentinel for w in pool], timeout=wait_s)

            keep: list[_Worker] = []
            for w in pool:
                alive = w.proc.is_alive()
                eof = w.drain(results, timeout_s)
                now = time.monotonic()
                if eof or not alive:
                    code = w.stop(kill=True)
                    if not w.ready:
                        start_failures += 1
                        if start_failures >= _MAX_START_FAILURES:
                            raise RuntimeError(
                                f"grading workers keep dying at start (exit code {code}); "
                                "a script that grades with workers > 0 must start its work "
                                "under `if __name__ == '__main__':`"
                            )
                    _fail_current(
                        w, results, queue, STATUS_ERROR, f"worker died (exit code {code})"
                    )
                elif w.pending and w.deadline is not None and now >= w.deadline:
                    w.stop(kill=True)
                    _fail_current(w, results, queue, STATUS_TIMEOUT, f"no result in {timeout_s:g}s")
                elif not w.ready and now >= w.started + start_timeout_s:
                    raise RuntimeError(f"grading worker did not start within {start_timeout_s:g}s")
                else:
                    keep.append(w)
                    continue
                if queue:
                    keep.append(start())
            pool = keep
        finished = True
    finally:
        # On success every worker is idle: let them exit. On an exception
        # (KeyboardInterrupt included) some may be busy: kill them all.
        if finished:
            for w in started:
                w.ask_to_exit()
        for w in started:
            w.stop(kill=not finished)

    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # cannot happen; a wrong grade would be worse than a loud failure
        raise RuntimeError(f"grading pool lost {len(missing)} items")
    return results  # type: ignore[return-value]


def _fail_current(
    w: _Worker,
    results: list[PairResult | None],
    queue: deque[list[int]],
    status: str,
    detail: str,
) -> None:
    """Charge the item the worker was on; send the rest of its chunk back to the queue."""
    if not w.pending:
        return
    results[w.pending.popleft()] = PairResult(False, status, detail)
    if w.pending:
        queue.appendleft(list(w.pending))
    w.pending.clear()
