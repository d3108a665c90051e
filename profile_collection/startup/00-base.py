"""stem-loop session, step 0: headless-safe plotting.

Configure with STEM_LOOP_SAMPLE, STEM_LOOP_DATA, STEM_LOOP_TILED_URI and TILED_API_KEY.
"""

from stem_loop.session import configure_matplotlib

configure_matplotlib()  # Agg when there is no display, so BestEffortCallback never blocks.
