#!/usr/bin/env bash
# GPU inference figures on a lent GPU machine (run from the repository root there).
#
# That machine has python3 with torch and CUDA but not this project's other packages: the
# wheels of ase and event-model (and event-model's needs) travel in .whl/, the default beam
# library in .gpu/cache (for the GPU tests' fast-model frames) and frames saved here in .gpu/;
# benchmarks/device_inference_prepare.sh makes both here (then carry .whl and .gpu). Results go
# to $OUT, each step's as it ends, the live reading's first: a call stopped at its limit still
# returns what was measured.
set -uo pipefail
OUT=${OUT:-/tmp/stem-loop-device}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD STEM_LOOP_CACHE=$PWD/.gpu/cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, numpy, h5py; print('torch', torch.__version__, 'numpy', numpy.__version__,
'h5py', h5py.__version__, torch.cuda.get_device_name(), torch.get_num_threads(), 'threads')" \
    | tee -a "$OUT/device.txt"
# the live reading (mirror="auto": the pair where the networks run in bfloat16), then each
# frame once in float32, the reading of the H200 figures measured before bfloat16 and the pair
for batch in 4096 16384; do
    timeout 150 python3 -m stem_loop.bench.inference --frames-file .gpu/frames.npz \
        --frames 65536 --device-batch "$batch" --workers 2 --repeats 3 --no-cpu --no-accuracy \
        --json 2>&1 | tee "$OUT/bench_gpu_$batch.txt"
done
timeout 150 python3 -m stem_loop.bench.inference --frames-file .gpu/frames.npz \
    --frames 65536 --device-batch 16384 --workers 2 --repeats 3 --no-cpu --no-accuracy \
    --mirror 1 --precision float32 --json 2>&1 | tee "$OUT/bench_gpu_16384_once_float32.txt"
# GPU against CPU (tests that skip without CUDA), above the tests needing Tiled
timeout 180 python3 -m pytest -p no:cacheprovider --confcutdir=tests/inference \
    tests/inference/test_predictor.py tests/inference/test_training.py \
    -k "gpu or device or dtypes" -rfEs 2>&1 | tail -60 | tee "$OUT/tests.txt"
# the same build's CPU figures on that machine's cores, for scale
timeout 90 python3 -m stem_loop.bench.inference --frames-file .gpu/frames.npz --frames 8192 \
    --batch 1024 --repeats 2 --no-gpu --no-accuracy --json 2>&1 | tee "$OUT/bench_cpu.txt"
if [ -f .gpu/experiments.py ]; then
    timeout 120 python3 .gpu/experiments.py .gpu/frames.npz 2>&1 | tee "$OUT/experiments.txt"
fi
