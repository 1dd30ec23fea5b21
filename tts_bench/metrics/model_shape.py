"""Model shapes for the cost models: read by :mod:`tts_bench.models`, named here as before.

    from tts_bench.metrics.model_shape import ModelShape, shape_for_model   # = tts_bench.models
"""

from tts_bench.models import *  # noqa: F403 (the same public names)
from tts_bench.models import __all__  # noqa: F401
