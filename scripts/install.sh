#!/usr/bin/env bash
# Install tts-bench with the embedded CPU engine and the transformers engine (the
# hf extra, over a pinned torch) into the virtual environment $VENV (default
# .venv), then prove llama.cpp can decode a token.
#
# llama-cpp-python builds llama.cpp from source. Its default native build
# (GGML_NATIVE) turns on the AMX and AVX-512 kernels of the machine's CPU; on
# these 2-core Xeon machines that build segfaults in llama_decode on the
# first prompt (llama-cpp-python 0.3.36, measured). The portable AVX2 build
# below decodes correctly. pip caches a wheel by version only, not by
# CMAKE_ARGS, so a cached native wheel is caught by the smoke test and
# rebuilt without the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install --upgrade pip
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
# torch before the hf extra (transformers), pinned: on these machines
# torch==2.13.0 resolves to the local CPU build (pip's find-links); elsewhere set
# TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu so that pip never pulls
# PyPI's CUDA build with its gigabytes of CUDA libraries.
torch_index=()
if [[ -n "${TORCH_CPU_INDEX:-}" ]]; then
  torch_index+=(--extra-index-url "$TORCH_CPU_INDEX")
fi
"$PY" -m pip install "${torch_index[@]}" "torch==${TORCH_VERSION:-2.13.0}"
"$PY" -m pip install -e '.[cpu,hf,dev]'
smoke() { "$PY" scripts/smoke_llamacpp.py; }
if ! smoke; then
  echo "llama.cpp failed its smoke test: rebuilding llama-cpp-python with CMAKE_ARGS=$CMAKE_ARGS" >&2
  version="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
  "$PY" -m pip install --force-reinstall --no-deps --no-cache-dir "llama-cpp-python==$version"
  smoke
fi
