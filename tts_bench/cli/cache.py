"""`tts-bench cache`: what the generation store holds, and the runs made from it."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from ._common import console


@app.command()
def cache(
    store_dir: Path = typer.Option(Path("results/store"), help="The generation store"),
    runs_dir: Path = typer.Option(Path("results/runs"), help="Where run directories are"),
    verify: bool = typer.Option(False, help="Checksum every shard (quarantines damaged ones)"),
    compact: bool = typer.Option(False, help="Roll crashed writers' journals and merge small shards "
                                 "into larger ones (generations and scores; safe while runs write)"),
    schema: bool = typer.Option(False, help="Print the stored fields (name, type, meaning) and exit"),
) -> None:
    """Show partitions (one per model), shards, samples and bytes; list runs."""
    import json

    from rich.table import Table

    from ..store import KEY_VERSION, ROW_VERSION, GenerationStore, ScoreStore, schema_doc

    if schema:
        console.print(f"call record: row version {ROW_VERSION}, key version {KEY_VERSION}", markup=False)
        console.print(schema_doc(), markup=False, highlight=False)
        return

    store = GenerationStore(store_dir)
    if verify or compact:
        for part_store in (store, ScoreStore(store_dir)):
            for fp in part_store.partitions():
                if compact:
                    removed = part_store.compact(fp, min_shards=2)
                    console.print(f"{part_store.SUBDIR}/{fp}: merged {removed} shards")
                else:
                    n = len(part_store.existing_keys(fp))
                    console.print(f"{part_store.SUBDIR}/{fp}: {n} records verified")
            if part_store.quarantined:
                console.print(f"[yellow]{len(part_store.quarantined)} damaged shard(s) moved to "
                              f"{store_dir / 'quarantine'}[/]")
    table = Table(title=f"generation store {store_dir}")
    for col in ("model_fp", "model", "engine", "shards", "journals", "samples", "MiB"):
        table.add_column(col, justify="left" if col in ("model_fp", "model", "engine") else "right")
    info = store.info()
    for row in info:
        table.add_row(row["model_fp"], str(row.get("model_id", "")), str(row.get("engine", "")),
                      str(row["shards"]), str(row["journals"]), str(row["rows"]),
                      f"{row['bytes'] / 2**20:.2f}")
    console.print(table if info else f"store {store_dir} is empty")
    runs = sorted(p for p in runs_dir.glob("*/manifest.json")) if runs_dir.is_dir() else []
    if runs:
        rt = Table(title=f"runs {runs_dir}")
        for col in ("run", "problems", "samples", "graded"):
            rt.add_column(col)
        for m in runs:
            d = json.loads(m.read_text())
            tot = d.get("totals", {})
            rt.add_row(m.parent.name, str(tot.get("problems", "")), str(tot.get("samples", "")),
                       "yes" if (m.parent / "samples.parquet").is_file() else "no")
        console.print(rt)
