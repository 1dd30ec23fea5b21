"""Run-directory outputs: graded samples, per-problem table, metrics, plot.

    write_report(run_dir, graded, per_problem, curves)

Files (all rewritten atomically on every report):
    samples.parquet      graded samples (one row per generation)
    per_problem.parquet  the per-problem reduction every metric reads
    metrics.csv/.json    tidy curves: metric, k, value, ci_low, ci_high, ...
    plot.png             pass@k and maj@k against k (log2 axis) with 95% CI bands
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..store import atomic_write, atomic_write_bytes


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _write_with_texts(f, graded: pd.DataFrame, texts) -> None:
    """samples.parquet from text-less ``graded`` and the stored texts, one store file at a time.

    Rows come in store order (plan order when the store was written in
    order); a row group per store file, so one file's texts are in memory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(graded, preserve_index=False).combine_chunks()  # one chunk: fast takes
    at = table.column_names.index("key") + 1 if "key" in table.column_names else 0
    schema = table.schema.insert(at, pa.field("text", pa.string()))
    with pq.ParquetWriter(f, schema) as w:
        written = 0
        for pos, text in texts.column_by_file("text"):
            contiguous = pos.size and pos[-1] - pos[0] == pos.size - 1 and (pos[1:] > pos[:-1]).all()
            part = table.slice(int(pos[0]), pos.size) if contiguous else table.take(pa.array(pos))
            w.write_table(part.add_column(at, "text", text.cast(pa.string())))
            written += len(pos)
        if written != table.num_rows:
            raise RuntimeError(f"samples.parquet: {written} stored texts for {table.num_rows} samples")


def write_report(run_dir: Path, graded: pd.DataFrame, per_problem: pd.DataFrame,
                 curves: pd.DataFrame, *, plot: bool = True, texts=None,
                 samples: bool = True) -> list[Path]:
    """``texts``: a ``store.Aligned`` over ``graded``'s rows, when their texts are still in the store.

    ``samples=False`` leaves samples.parquet as it is (``graded`` was read from it).
    """
    run_dir = Path(run_dir)
    written = []
    if samples:
        with atomic_write(run_dir / "samples.parquet") as f:  # streamed: millions of texts
            if texts is None:
                graded.to_parquet(f, index=False)
            else:
                _write_with_texts(f, graded, texts)
    pp = per_problem.copy()
    if "class_counts" in pp.columns:  # dicts -> JSON text: portable across readers
        pp["class_counts"] = pp["class_counts"].map(lambda d: json.dumps(d, sort_keys=True))
    atomic_write_bytes(run_dir / "per_problem.parquet", _parquet_bytes(pp))
    atomic_write_bytes(run_dir / "metrics.csv", curves.to_csv(index=False).encode())
    atomic_write_bytes(
        run_dir / "metrics.json",
        json.dumps(json.loads(curves.to_json(orient="records")), indent=1).encode(),
    )
    written += [run_dir / n for n in ("samples.parquet", "per_problem.parquet", "metrics.csv",
                                      "metrics.json")]
    if plot:
        from .plot import plot_curves

        written.append(plot_curves(curves, run_dir / "plot.png", title=run_dir.name))
    return written
