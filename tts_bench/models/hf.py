"""A model shape from a Hugging Face config.json, with the parameter count from safetensors where present."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Optional

from tts_bench.models.shape import ModelShape, ModelShapeError, PathLike

# --------------------------------------------------------------------- HF config.json

# Families whose parameter count the architecture formula knows.
_ARCH_FORMULA = ("llama", "mistral", "qwen2", "qwen3")
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def shape_from_hf_config(path: PathLike) -> ModelShape:
    """Shape from a Hugging Face ``config.json`` (or the folder holding it).

    Required keys: hidden_size, num_hidden_layers, num_attention_heads,
    vocab_size (and intermediate_size when the count comes from the
    architecture). num_key_value_heads defaults to num_attention_heads,
    head_dim to hidden_size // num_attention_heads. A multimodal config's
    ``text_config`` is used when the top level lacks the decoder keys. The
    parameter count's source is recorded in ``params_from`` (see the module
    docstring for the order).
    """
    p = Path(path).expanduser()
    folder, cfg_file = (p, p / "config.json") if p.is_dir() else (p.parent, p)
    if not cfg_file.is_file():
        raise ModelShapeError(f"{cfg_file}: no such file; a Hugging Face model folder holds config.json")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelShapeError(f"{cfg_file}: not valid JSON ({e})") from None
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        outer, cfg = cfg, dict(cfg["text_config"])
        for key in ("torch_dtype", "quantization_config"):  # kept at the top level
            if cfg.get(key) is None and outer.get(key) is not None:
                cfg[key] = outer[key]

    def need(key: str) -> int:
        if cfg.get(key) is None:
            raise ModelShapeError(f"{cfg_file}: config lacks key '{key}'")
        return int(cfg[key])

    d_model = need("hidden_size")
    n_layers = need("num_hidden_layers")
    n_heads = need("num_attention_heads")
    vocab = need("vocab_size")
    n_kv = int(cfg.get("num_key_value_heads") or n_heads)
    head_dim = int(cfg.get("head_dim") or d_model // n_heads)
    d_ff = int(cfg["intermediate_size"]) if cfg.get("intermediate_size") is not None else None
    arch = cfg.get("model_type")

    n_params, params_from = _params_from_safetensors(folder)
    if n_params is None:
        n_params, params_from = _params_from_index(folder, cfg, cfg_file)
    if n_params is None:
        if arch not in _ARCH_FORMULA:
            raise ModelShapeError(
                f"{cfg_file}: model_type {arch!r} has no parameter-count formula here "
                f"(known: {', '.join(_ARCH_FORMULA)}); put the model's *.safetensors or "
                f"model.safetensors.index.json beside config.json so the count can be read"
            )
        if d_ff is None:
            need("intermediate_size")
        n_params, params_from = _arch_param_count(cfg, d_model, n_layers, n_heads, n_kv, head_dim,
                                                  d_ff, vocab), "architecture"
    return ModelShape(
        n_params=int(n_params), n_layers=n_layers, d_model=d_model, n_heads=n_heads,
        n_kv_heads=n_kv, head_dim=head_dim, vocab_size=vocab, source=str(cfg_file),
        params_from=params_from, d_ff=d_ff, arch=arch,
    )


def _arch_param_count(cfg: dict, d: int, L: int, h: int, h_kv: int, hd: int, d_ff: int, V: int) -> int:
    """Parameters of a llama/mistral/qwen2/qwen3 decoder, counted tensor by tensor."""
    arch = cfg.get("model_type")
    q, kv = h * hd, h_kv * hd
    attn = d * q + 2 * d * kv + q * d  # q, k, v, o projections
    # Biases: qwen2 has q/k/v biases always; llama/qwen3 put a bias on q/k/v/o
    # when attention_bias is set (mistral has no such option).
    if arch == "qwen2":
        attn += q + 2 * kv
    elif cfg.get("attention_bias"):
        attn += q + 2 * kv + d
    if arch == "qwen3":
        attn += 2 * hd  # q_norm and k_norm, one weight per head dimension
    mlp = 3 * d * d_ff  # gate, up, down
    if cfg.get("mlp_bias"):
        mlp += 2 * d_ff + d
    norms = 2 * d  # input and post-attention RMSNorm
    embed = V * d
    # These families default to an untied head (LlamaConfig, MistralConfig, Qwen2/3Config).
    head = 0 if cfg.get("tie_word_embeddings", False) else V * d
    return L * (attn + mlp + norms) + embed + d + head


def _params_from_safetensors(folder: Path) -> "tuple[Optional[int], str]":
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None, ""
    total = 0
    for f in files:
        count = _safetensors_elements(f)
        if count is None:  # e.g. a git-lfs pointer instead of the weights
            return None, ""
        total += count
    return total, "safetensors-shapes"


def _safetensors_elements(path: Path) -> Optional[int]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack("<Q", head)
        if n > min(path.stat().st_size - 8, 1 << 28):
            return None
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    if not isinstance(header, dict):
        return None
    return sum(
        math.prod(int(x) for x in t["shape"])
        for name, t in header.items()
        if name != "__metadata__" and isinstance(t, dict) and "shape" in t
    )


def _params_from_index(folder: Path, cfg: dict, cfg_file: Path) -> "tuple[Optional[int], str]":
    index = folder / "model.safetensors.index.json"
    if not index.is_file() or cfg.get("quantization_config"):
        return None, ""
    total = (json.loads(index.read_text()).get("metadata") or {}).get("total_size")
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "").replace("torch.", "")
    if total is None or dtype not in _DTYPE_BYTES:
        return None, ""
    size = _DTYPE_BYTES[dtype]
    if int(total) % size:
        raise ModelShapeError(f"{index}: total_size {total} is not a multiple of {size} ({dtype}, "
                              f"torch_dtype of {cfg_file})")
    return int(total) // size, "safetensors-index"


