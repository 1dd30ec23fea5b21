"""`tts-bench import FILE --dataset D [--format F]`: bring generations made elsewhere into the store.

Formats (``--format``):

- ``jsonl`` (default): one generation per line: {"problem_id": str, "text": str}
  and optionally "sample_index", "prompt_tokens", "completion_tokens",
  "finish_reason", "mean_logprob" (mean token log-probability),
  "verifier_score" and "step_scores" (a reward model's score and per-step
  scores, stored beside the run in scores.parquet).
- ``lm-eval``: lm-evaluation-harness ``--log_samples`` files
  (samples_<task>_<date>.jsonl); the raw ``resps`` are imported, problems
  found by matching the doc's text to the dataset's problem statements.
- ``lighteval``: lighteval details files (details_<task>_<date>.parquet);
  ``model_response.text`` imported, problems matched by ``doc.query``.
- ``openai-batch``: OpenAI Batch API output; the problem id and sample
  number come from ``custom_id`` ("<problem id>-<n>", a bare problem id, or
  ``--id-pattern``'s named groups ``problem`` and ``sample``).

``--id-field`` names the field (dotted: doc.unique_id) that identifies the
problem and ``--match`` how: ``id`` (it holds tts-bench's problem id) or
``text`` (it holds, or contains, the problem statement). Every sample is
used; problems may have different n (the k grid stops at the smallest),
and what was used is printed. The samples are stored under --model and a run
directory is made, so they can be graded and measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="The file of generations"),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Task the problems belong to"),
    model: Optional[str] = typer.Option(None, help="Model name to file them under (default: file name)"),
    fmt: str = typer.Option("jsonl", "--format", "-f",
                            help="jsonl, lm-eval (--log_samples), lighteval (details parquet), openai-batch"),
    id_field: Optional[str] = typer.Option(
        None, help="Field naming the problem, dotted (default: problem_id; lm-eval doc; lighteval "
                   "doc.query; openai-batch custom_id)"),
    match: Optional[str] = typer.Option(
        None, help="id: the field holds the problem id; text: it holds or contains the problem "
                   "statement (default: text for lm-eval and lighteval, else id)"),
    id_pattern: Optional[str] = typer.Option(
        None, help="openai-batch: regex on custom_id with named groups problem and (optional) sample"),
    overrides: Optional[List[str]] = typer.Argument(None, help="More overrides, e.g. dataset.data_dir=..."),
) -> None:
    """Import generations, then grade them and compute metrics."""
    from ..report import metrics_table
    from ..runner.importer import import_generations

    with user_errors():
        result = import_generations(file, dataset, model or file.stem, list(overrides or []), fmt=fmt,
                                    id_field=id_field, match=match, id_pattern=id_pattern)
    for line in result.notes:
        console.print(line, highlight=False, markup=False)
    console.print(f"imported {result.gen.generated} new samples into the store "
                  f"({result.gen.planned} in the file)")
    for warning in result.gen.errors:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.metrics is not None:
        console.print(metrics_table(result.metrics, title=result.run_dir.name))
    console.print(f"files: {result.run_dir}/")
