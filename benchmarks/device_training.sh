#!/usr/bin/env bash
# Train the ensemble with strained-cell multislice contents on a lent GPU machine (run from the
# repository root there; see benchmarks/device_training.py). Before the call, here:
#   python benchmarks/device_training.py prepare .gpu/train-cache
# and carry .whl (ase, event-model and its needs, as for device_inference.sh) and .gpu.
# The ensemble, its metadata, the timings and the log come back in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/stem-loop-device}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD STEM_LOOP_CACHE=$PWD/.gpu/train-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/train.log"
nproc | tee -a "$OUT/train.log"
timeout "${TRAIN_LIMIT_S:-560}" python3 benchmarks/device_training.py run --work /tmp/work \
    --device cuda --workers "${WORKERS:-14}" "$@" 2>&1 | grep -v "^  shard" | tee -a "$OUT/train.log"
model=/tmp/work/model
cp "$model"/descriptor_net.safetensors "$model"/descriptor_net.json "$model"/device_training.json \
    "$OUT"/ 2>/dev/null
for i in 0 1 2; do cp "$model/member$i/descriptor_net.json" "$OUT/member$i.json" 2>/dev/null; done
ls -la "$OUT"
