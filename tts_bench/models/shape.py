"""ModelShape: the geometry of a decoder-only transformer, as the cost models need it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

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


