"""shape_for_model: a model's shape from what names it (.gguf, pkg:, folder, config.json, hub id)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tts_bench.models.gguf_file import shape_from_gguf
from tts_bench.models.hf import shape_from_hf_config
from tts_bench.models.shape import ModelShape, ModelShapeError, PathLike

# --------------------------------------------------------------------- dispatch


def shape_for_model(path: PathLike, revision: Optional[str] = None) -> ModelShape:
    """Shape of the model at ``path``, whatever form it takes.

    ``path``: a ``.gguf`` file; ``pkg:<module>/<file>`` (the embedded model,
    resolved like ``model.path``); a folder holding ``config.json``; a
    ``config.json`` file; or a hub id ``org/name`` already in the local
    Hugging Face cache (``revision`` picks the snapshot; default ``main``).
    Nothing is downloaded.
    """
    text = os.fspath(path)
    if text.startswith("pkg:"):
        from .files import resolve_model_path

        return shape_from_gguf(resolve_model_path(text))
    p = Path(text).expanduser()
    if p.is_file():
        if p.suffix.lower() == ".gguf" or _has_gguf_magic(p):
            return shape_from_gguf(p)
        return shape_from_hf_config(p)
    if p.is_dir():
        return shape_from_hf_config(p)
    cached = _hub_cache_snapshot(text, revision)
    if cached is not None:
        return shape_from_hf_config(cached)
    raise ModelShapeError(
        f"{text}: no such file or folder, and not a hub id in the local Hugging Face cache; "
        f"give a .gguf file, a folder with config.json, or download the model first"
    )


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _hub_cache_snapshot(repo_id: str, revision: Optional[str]) -> Optional[Path]:
    """The cached snapshot of a hub id holding config.json, or None; never a download.

    Not huggingface_hub's try_to_load_from_cache (2.4): it reads refs/<name> without
    stripping it, so a ref ending in a newline (hand-made caches, this project's tests)
    is missed. HF_HUB_CACHE / HF_HOME are read at each call.
    """
    if repo_id.count("/") != 1:
        return None
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub"
    )
    root = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    ref = root / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    if commit and (root / "snapshots" / commit / "config.json").is_file():
        return root / "snapshots" / commit
    return None
