#!/usr/bin/env bash
# The paper's model on one accelerator, in one short command: bf16, large batches, images/s
# and model FLOP utilisation against the chip's own measured bf16 matmul peak.
#
#   bash benchmarks/gpu.sh [TRAIN_BATCH] [INFER_BATCH]     (defaults 256 and 256)
#
# Needs a Python with jax for the accelerator (jax[cuda]) and this package's dependencies
# (pip install -e .): mlt_flax.train imports tensorflow (the input pipeline), clu and
# ml_collections. Writes gpu.md and gpu.json to $OUT if set (the device tool's output
# folder), else to workdir/benchmarks/. Not run on this project's CPU machine (no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN_BATCH="${1:-256}"
INFER_BATCH="${2:-256}"
PYTHON="${PYTHON:-python3}"
DEST="${OUT:-workdir/benchmarks}"
mkdir -p "$DEST"

"$PYTHON" -c 'import jax; print("jax", jax.__version__, jax.devices())'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader
PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 "$PYTHON" -m benchmarks.run --gpu \
  --train_batch="$TRAIN_BATCH" --infer_batch="$INFER_BATCH" --markdown_out="$DEST/gpu.md"
