"""Model shapes for the cost models: read by :mod:`tts_bench.models`, named here as before.

    from tts_bench.metrics.model_shape import ModelShape, shape_for_model   # = tts_bench.models
"""

from tts_bench.models import (
    GGUFArray,
    GGUFInfo,
    ModelShape,
    ModelShapeError,
    read_gguf,
    shape_for_model,
    shape_from_gguf,
    shape_from_hf_config,
)

__all__ = [
    "GGUFArray",
    "GGUFInfo",
    "ModelShape",
    "ModelShapeError",
    "read_gguf",
    "shape_for_model",
    "shape_from_gguf",
    "shape_from_hf_config",
]
