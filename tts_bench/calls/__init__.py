"""The cached call layer between strategies and engines (see ``layer.py``).

    from tts_bench.calls import Call, CallLayer, Result
"""

from .layer import Call, CallLayer, LayerStats, Result

__all__ = ["Call", "CallLayer", "LayerStats", "Result"]
