"""Step 2b: the inference agent reads the microscope's beam conditions at each run's start."""

from stem_loop.agents.inference import microscope_conditions

inference_agent.conditions = microscope_conditions(microscope)  # noqa: F821 - 10-, 20-*.py
