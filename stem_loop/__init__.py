"""stem-loop: autonomous 4D-STEM with Bluesky, Ophyd and Tiled."""

import os

from .allocator import keep_freed_memory

# The loop runs many threads beside torch (RunEngine, agents, Tiled, Dask): OpenMP workers
# that spin while waiting steal their cores, which measured 2-3x slower inference here and
# 60x for single frames. Sleep instead (set before torch loads; an explicit value wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Reuse freed batch-sized buffers instead of fresh, zeroed pages (half the inference front
# end's time on 2 cores; .allocator; STEM_LOOP_MALLOC=system opts out).
keep_freed_memory()

__version__ = "0.1.0"
