"""Simulated 4D-STEM microscope: specimens, CBED physics (abTEM exact + fast) and sim backends."""

from .builtin_samples import BUILTIN_SAMPLES, builtin_sample
from .microscope import ForwardModel, Microscope, make_forward_model
from .optics import Beam, Detector
from .sample import DESCRIPTOR_NAMES, Sample, SampleFileError

__all__ = [
    "BUILTIN_SAMPLES",
    "DESCRIPTOR_NAMES",
    "Beam",
    "Detector",
    "ForwardModel",
    "Microscope",
    "Sample",
    "SampleFileError",
    "builtin_sample",
    "make_forward_model",
]
