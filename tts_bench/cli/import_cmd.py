"""`tts-bench import FILE --dataset D`: bring generations made elsewhere into the store.

FILE is JSONL, one generation per line: {"problem_id": str, "text": str} and
optionally "sample_index", "prompt_tokens", "completion_tokens",
"finish_reason", "mean_logprob" (mean token log-probability), "verifier_score"
and "step_scores" (a reward model's score and per-step scores, stored beside
the run in scores.parquet). The samples are stored under the model name given by
--model and a run directory is made, so they can be graded and measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="JSONL of generations"),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Task the problems belong to"),
    model: Optional[str] = typer.Option(None, help="Model name to file them under (default: file name)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="More overrides, e.g. dataset.data_dir=..."),
) -> None:
    """Import generations, then grade them and compute metrics."""
    from ..report import metrics_table
    from ..runner.importer import import_generations

    with user_errors():
        result = import_generations(file, dataset, model or file.stem, list(overrides or []))
    console.print(f"imported {result.gen.generated} new samples into the store "
                  f"({result.gen.planned} in the file)")
    for warning in result.gen.errors:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.metrics is not None:
        console.print(metrics_table(result.metrics, title=result.run_dir.name))
    console.print(f"files: {result.run_dir}/")
