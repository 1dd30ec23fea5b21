"""A GGUF file's metadata and tensor shapes, and the model shape they give."""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tts_bench.models.shape import ModelShape, ModelShapeError, PathLike

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
