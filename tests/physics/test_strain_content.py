"""What the fast model leaves out: strain changes the disk contents of thick crystals.

Measured with abTEM plane-wave multislice of the strained against the unstrained cell
(:func:`sim_devices.validation.strain_content_change`). The numbers are in
docs/architecture.rst; a strain-aware fast model must drive the change it leaves to zero.
"""

from __future__ import annotations

import numpy as np

from sim_devices.validation import strain_content_change

TILTS = np.random.default_rng(1).uniform(-3.0, 3.0, (10, 2))


def test_zero_strain_changes_nothing():
    change = strain_content_change("Si", "110", 200.0, (0.0, 0.0), 10.0, tilts_mrad=TILTS)
    assert change.correlation > 1 - 1e-9
    assert max(change.beam_change) < 1e-6
    assert change.beams[0] == (0, 0)  # the transmitted beam is the brightest


def test_strain_changes_contents_more_in_thicker_crystals():
    thin, thick = (
        strain_content_change("Si", "110", 200.0, (0.02, -0.02), t, tilts_mrad=TILTS)
        for t in (10.0, 45.0)
    )
    assert thick.correlation < thin.correlation < 1.0
    assert max(thick.beam_change) > max(thin.beam_change) > 0.01
