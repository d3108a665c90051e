"""Hardware-shaped Ophyd devices for 4D-STEM: a scan generator and a pixelated detector.

The devices know nothing about simulation. They drive two backend protocols,
:class:`ScanBackend` (the scan engine) and :class:`FrameSource` (the camera read-out); the
simulated microscope implements both in :mod:`sim_devices.backends`, and a real instrument
plugs in by implementing the same few methods.

Data keys in the ``primary`` stream: ``<det>-image`` (frames, external HDF5 ``STREAM:``,
``uint16``, shape ``[rows, cols]``), ``scan_gen-x`` and ``scan_gen-y`` (probe position in nm;
event data in step scans, external HDF5 ``STREAM:`` in batch mode), aligned row for row.

>>> scan_gen = ScanGenerator(MyScanEngine(...), Hdf5PathProvider(data_dir), name="scan_gen")
>>> det = PixelatedDetector(MyCamera(...), Hdf5PathProvider(data_dir), name="det")
>>> RE(bp.grid_scan([det], scan_gen.y, 20, 75, 6, scan_gen.x, 20, 75, 6))
"""

from ._backends import FrameSource, ScanBackend
from ._frame_recorder import FILE_CHUNK_FRAMES, FRAMES_DATASET
from ._hdf5_stream_file import Hdf5StreamFile
from ._paths import Hdf5PathProvider
from ._pixelated_detector import PixelatedDetector
from ._scan_axis import ScanAxis
from ._scan_generator import X_DATASET, Y_DATASET, ScanGenerator
from ._scan_path import ScanPath
from ._stream_provider import HDF5_MIMETYPE, Hdf5StreamProvider

__all__ = [
    "FILE_CHUNK_FRAMES",
    "FRAMES_DATASET",
    "HDF5_MIMETYPE",
    "X_DATASET",
    "Y_DATASET",
    "FrameSource",
    "Hdf5PathProvider",
    "Hdf5StreamFile",
    "Hdf5StreamProvider",
    "PixelatedDetector",
    "ScanAxis",
    "ScanBackend",
    "ScanGenerator",
    "ScanPath",
]
