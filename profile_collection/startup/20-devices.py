"""Step 2: the simulated microscope (STEM_LOOP_SAMPLE) as Ophyd devices ``scan_gen`` and ``det``."""

from stem_loop.session import make_devices

microscope, scan_gen, det = make_devices(catalog)  # noqa: F821 - from 10-storage.py
