"""Step 3: plans."""

import bluesky.plan_stubs as bps  # noqa: F401
import bluesky.plans as bp  # noqa: F401
import bluesky.preprocessors as bpp  # noqa: F401

from stem_loop.plans import sparse_scan  # noqa: F401

# adaptive_4dstem joins here once stem_loop.plans provides it (the autonomous loop).
