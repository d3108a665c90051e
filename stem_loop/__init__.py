"""stem-loop: autonomous 4D-STEM with Bluesky, Ophyd and Tiled."""

import os

# The loop runs many threads beside torch (RunEngine, agents, Tiled, Dask): OpenMP workers
# that spin while waiting steal their cores, which measured 2-3x slower inference here and
# 60x for single frames. Sleep instead (set before torch loads; an explicit value wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
