#!/usr/bin/env bash
# Creates bench/.venv-setfit with the SetFit reference environment (bench/setfit/requirements.txt).
# Usage: bash bench/setfit/setup.sh   (idempotent; re-running only installs what is missing)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv-setfit"
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
torch_pin="$(grep -E '^torch==' "$here/requirements.txt")"
# Prefer the CPU-only torch wheel; fall back to PyPI's (CUDA-enabled, runs on CPU) when the
# PyTorch index cannot be reached.
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  if "$pip" install -q --retries 0 --timeout 20 "$torch_pin" \
       --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
    echo "installed CPU-only torch"
  else
    echo "CPU-only torch index unreachable; installing torch from PyPI"
  fi
fi
"$pip" install -q -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import setfit, sentence_transformers, transformers, torch, sklearn, safetensors, numpy
print("setfit", setfit.__version__, "sentence-transformers", sentence_transformers.__version__,
      "transformers", transformers.__version__, "torch", torch.__version__,
      "scikit-learn", sklearn.__version__, "safetensors", safetensors.__version__,
      "numpy", numpy.__version__)
PY
