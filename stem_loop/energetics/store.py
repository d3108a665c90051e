"""DFT energies kept on disk between runs, so no structure is ever computed twice.

One JSON-lines file per material, structure-builder version and physical GPAW settings (the
same key as the reference cache), under ``$STEM_LOOP_CACHE/energetics``. Each line is one
finished DFT calculation: the strain, the *absolute* energy per atom, the reference lattice
constant the structure was built on, and its provenance. Lines are appended and flushed one at
a time, so a crash loses at most the line being written; a torn or foreign line is skipped with
a warning when the file is read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import reference
from .settings import GPAWSettings

log = logging.getLogger(__name__)

#: Two references agree when their lattice constants differ by less than this (Angstrom); a
#: recomputed reference with the same settings reproduces its lattice constant to ~1e-12.
SAME_LATTICE_A = 1e-9


@dataclass(frozen=True)
class StoredEnergy:
    """One stored DFT result.

    Attributes
    ----------
    strain : tuple of float
        ``(exx, eyy, exy)`` as the service keys it (rounded).
    energy_ev_per_atom : float
        Absolute GPAW energy per atom.
    lattice_constant_a : float
        Reference lattice constant the strained structure was built from.
    provenance : dict
        Calculator settings, wall time, attempts, host, reason.
    """

    strain: tuple[float, float, float]
    energy_ev_per_atom: float
    lattice_constant_a: float
    provenance: dict[str, Any]


class ResultStore:
    """Append-only on-disk store of DFT strain energies.

    Parameters
    ----------
    path : str or Path
        The JSON-lines file (created on the first :meth:`append`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, material: str, settings: GPAWSettings) -> ResultStore:
        """The default store of ``material`` computed with ``settings``."""
        name = f"results-{material}-v{reference.BUILDER_VERSION}-{settings.physics_key()}.jsonl"
        return cls(reference.cache_dir() / name)

    def load(self, lattice_constant_a: float) -> list[StoredEnergy]:
        """Every stored result built on the reference with ``lattice_constant_a``."""
        if not self.path.exists():
            return []
        found: list[StoredEnergy] = []
        skipped = 0
        with self.path.open() as handle:
            for line in handle:
                try:
                    raw = json.loads(line)
                    entry = StoredEnergy(
                        strain=tuple(float(v) for v in raw["strain"]),  # type: ignore[arg-type]
                        energy_ev_per_atom=float(raw["energy_ev_per_atom"]),
                        lattice_constant_a=float(raw["lattice_constant_a"]),
                        provenance=dict(raw.get("provenance", {})),
                    )
                except (ValueError, KeyError, TypeError):
                    skipped += 1
                    continue
                if len(entry.strain) != 3:
                    skipped += 1
                elif abs(entry.lattice_constant_a - lattice_constant_a) < SAME_LATTICE_A:
                    found.append(entry)
        if skipped:
            log.warning("%s: skipped %d unreadable line(s)", self.path, skipped)
        return found

    def append(self, entry: StoredEnergy) -> None:
        """Write one result (flushed to disk before returning)."""
        line = json.dumps(
            {
                "strain": list(entry.strain),
                "energy_ev_per_atom": entry.energy_ev_per_atom,
                "lattice_constant_a": entry.lattice_constant_a,
                "provenance": entry.provenance,
            }
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
