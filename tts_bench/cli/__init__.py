"""The `tts-bench` command line: typer outside, Hydra's compose API inside.

    tts-bench run                          # the embedded default
    tts-bench run dataset=gsm8k budget.n=16
    tts-bench run -m budget.n=1,4,16 dataset=aime24,aime25
    tts-bench config dataset=math500       # the composed config
    tts-bench grade RUN | score RUN verifier=genrm | report RUN | import FILE --dataset D | list | cache

One module per command; heavy packages are imported inside the commands so
``tts-bench --help`` stays instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Benchmark harness for test-time-scaling experiments on LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import cache, config_cmd, gate, grade, import_cmd, list_cmd, report, run, score, submit  # noqa: E402,F401


def main() -> None:
    app()
