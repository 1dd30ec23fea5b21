"""`tts-bench config [OVERRIDES...]`: print the composed configuration."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command("config")
def config_cmd(
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides"),
) -> None:
    """Print the composed, validated config as YAML."""
    from ..config import compose, to_yaml

    with user_errors():
        cfg = compose(list(overrides or []))
    console.print(to_yaml(cfg), highlight=False, markup=False)
