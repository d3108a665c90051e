"""Edge inference: CBED frames to atomic-structure descriptors with uncertainties.

The model is a hybrid: a fixed physics front end registers the disk lattice of every frame
(:mod:`~stem_loop.inference.lattice`) and a small trained network
(:mod:`~stem_loop.inference.network`) reads the registered disks and the lattice into the six
descriptors, each with a predicted standard deviation.
"""

from .conditions import BeamConditions
from .predictor import Prediction, Predictor

__all__ = ["BeamConditions", "Prediction", "Predictor"]
