"""Step 1: the Tiled catalog (embedded unless STEM_LOOP_TILED_URI is set) and the RunEngine."""

from stem_loop.agents.inference import InferenceAgent
from stem_loop.session import make_run_engine
from stem_loop.storage import open_catalog

catalog = open_catalog()
# Documents pass through the inference agent to Tiled: each run gains a "descriptors" stream.
inference_agent = InferenceAgent()  # beam conditions: 25-inference.py
RE, bec = make_run_engine(catalog, progress_bar=True, wrap_writer=inference_agent.forward_to)
tiled_client = catalog.client  # tiled_client[uid], tiled_client[-1], tiled_client[scan_id]
print(f"stem-loop: recording into {catalog.runs_uri} (data in {catalog.data_dir})")
