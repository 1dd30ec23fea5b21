"""Helpers shared by the CLI commands: one console, one way to fail."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console

console = Console(soft_wrap=True)  # long paths and messages stay on one line
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def user_errors():
    """Turn errors the user can fix into one red line: exit code 2 for a bad configuration
    or input, 1 for an engine failure whose message says what to check (no traceback)."""
    from ..config import ConfigError
    from ..engines.base import EngineError

    try:
        yield
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except EngineError as e:
        from rich.text import Text

        # A server's message may hold brackets: print it as text, never as markup.
        err_console.print(Text.assemble(("error:", "bold red"), f" {e}"), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: every finished sample is stored; "
                          "run the same command again to resume[/]", soft_wrap=True)
        raise typer.Exit(130) from None
