"""`python -m tts_bench ...` is the same as the `tts-bench` command."""

from .cli import main

main()
