"""IPython settings of the stem-loop profile (the session itself is built in startup/)."""

c = get_config()  # noqa: F821 - provided by IPython

# ``await`` at the prompt runs on the RunEngine's event loop, as ophyd-async devices expect.
c.InteractiveShellApp.exec_lines = [
    "from bluesky.run_engine import autoawait_in_bluesky_event_loop",
    "autoawait_in_bluesky_event_loop()",
]
