#!/usr/bin/env bash
# GPU check for the trainer on a random-init ~0.5B Llama-shaped model: 30 LoRA, 30 QLoRA and
# 30 full-length LoRA steps, tokens/s and peak CUDA memory against the estimate, adapter saved;
# then a bare PyTorch loop on the same batch as the baseline. No network; < 5 minutes.
# Usage: tests/gpu/check.sh   (PYTHON=/path/to/python to choose the interpreter)
# Exits 0 with a message on a machine without CUDA.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "No CUDA device (or no torch for $PYTHON): skipping the GPU check."
    exit 0
fi
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 300 "$PYTHON" tests/gpu/check.py "$@"
