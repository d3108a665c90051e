#!/usr/bin/env bash
# Prepare, on this (development) machine, what benchmarks/device_inference.sh needs on a lent
# GPU machine that has python3 3.12 with torch, numpy, scipy, h5py and safetensors but not this
# project's other imports:
#   .whl/  wheels of ase, event-model and their missing needs (cp312, manylinux x86-64), at the
#          versions installed in .venv;
#   .gpu/  frames.npz (256 distinct frames of the built-in sample and their beam conditions,
#          `stem-loop bench inference --save-frames`) and cache/ (the default beam library, for
#          the GPU tests' fast-model frames).
# Both are listed in .git/info/exclude (ignored); the device call carries them:
#   carry [".whl", ".gpu"], command "bash benchmarks/device_inference.sh".
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PY:-.venv/bin/python}
for dir in /.whl/ /.gpu/; do
    grep -qxF "$dir" .git/info/exclude || echo "$dir" >>.git/info/exclude
done
# what the benches, the agent and sim_devices import that the GPU image lacks
PACKAGES=(ase event-model jsonschema jsonschema-specifications referencing rpds-py jsonpointer)
rm -rf .whl && mkdir -p .whl .gpu/cache
for name in "${PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$name==$version"
done
# the frames the GPU figures read, and the default beam library they were simulated with
# (built once here if missing, minutes; from $STEM_LOOP_CACHE or ~/.cache/stem-loop)
"$PY" -m stem_loop.bench.inference --frames 256 --no-cpu --no-gpu --no-accuracy \
    --save-frames .gpu/frames.npz >/dev/null
"$PY" - <<'PYTHON'
import shutil

from sim_devices.cbed_library import stored_library
from stem_loop.bench.inference import load_frames

_, conditions = load_frames(".gpu/frames.npz", 1)
shutil.copy2(stored_library(conditions.library_spec()), ".gpu/cache/")
PYTHON
du -sh .whl .gpu
