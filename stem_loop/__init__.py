"""stem-loop: autonomous 4D-STEM with Bluesky, Ophyd and Tiled."""

__version__ = "0.1.0"
