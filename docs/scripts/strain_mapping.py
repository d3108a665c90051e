"""Draw ``docs/_static/strain_mapping.png``: the Si [110] scan frame and a strained cell.

Run from the repository root: ``python docs/scripts/strain_mapping.py``.
Left: the crystal seen down the beam [110] with the scan axes x = [-110], y = [001].
Right: the same projection strained in the scan frame (exaggerated), with the plane-stress
response along the beam printed, computed by :func:`stem_loop.energetics.scan_frame_strain`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stem_loop.energetics import build_structure, get_material, scan_frame_strain  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "_static" / "strain_mapping.png"
A = 5.477  # relaxed PBE lattice constant (production settings)


def _projected(strain: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Atom positions (x, y in the scan frame) of a 2x2 block of the zone-axis cell."""
    atoms = build_structure(
        dict(zip(("exx", "eyy", "exy"), strain, strict=True)), "Si", lattice_constant_a=A
    )
    cell = atoms.cell[:]
    points = []
    for i in range(-3, 4):
        for j in range(-3, 4):
            for k in range(-3, 4):
                shift = i * cell[0] + j * cell[1] + k * cell[2]
                points.extend(atoms.positions + shift)
    points = np.array(points)
    # The orthorhombic zone-axis cell in the scan frame: a/sqrt2 along x, a along y.
    e = scan_frame_strain(*strain, "Si")
    box = (np.eye(3) + e) @ np.diag([A / np.sqrt(2), A, A / np.sqrt(2)])
    return points, box


def _panel(ax, strain, title):
    points, box = _projected(strain)
    lim = 1.25 * A
    keep = (np.abs(points[:, 0]) < lim) & (np.abs(points[:, 1]) < lim)
    ax.scatter(points[keep, 0], points[keep, 1], s=28, c="#2b6cb0", zorder=3)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], float)
    outline = corners @ box[:2, :2].T
    ax.plot(outline[:, 0], outline[:, 1], color="#c05621", lw=1.5, zorder=2)
    ax.annotate("", xy=(0.9 * lim, -0.95 * lim), xytext=(0.3 * lim, -0.95 * lim),
                arrowprops={"arrowstyle": "->", "lw": 1.5})  # fmt: skip
    ax.text(0.6 * lim, -0.9 * lim, "x = [-110]", ha="center", va="bottom", fontsize=9)
    ax.annotate("", xy=(-0.95 * lim, 0.9 * lim), xytext=(-0.95 * lim, 0.3 * lim),
                arrowprops={"arrowstyle": "->", "lw": 1.5})  # fmt: skip
    ax.text(-0.9 * lim, 0.6 * lim, "y = [001]", rotation=90, ha="left", va="center", fontsize=9)
    ax.text(0.95 * lim, 0.95 * lim, "beam z = [110]\n(out of the page)", ha="right",
            va="top", fontsize=8)  # fmt: skip
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(title, fontsize=10)


def main() -> Path:
    si = get_material("Si")
    strain = (0.06, -0.03, 0.04)  # exaggerated to be visible
    e = scan_frame_strain(*strain, si)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.8), constrained_layout=True)
    _panel(axes[0], (0.0, 0.0, 0.0), "Si [110], unstrained (a = 5.477 Å)")
    _panel(
        axes[1],
        strain,
        f"exx={strain[0]:+.2f}, eyy={strain[1]:+.2f}, exy={strain[2]:+.2f}\n"
        f"plane stress: ezz={e[2, 2]:+.4f}, |exz|+|eyz|={abs(e[0, 2]) + abs(e[1, 2]):.0e}",
    )
    fig.suptitle("Scan frame vs crystal axes; orange: zone-axis cell (a/√2 × a)", fontsize=10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    return OUT


if __name__ == "__main__":
    print(main())
