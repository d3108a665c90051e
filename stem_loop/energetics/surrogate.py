"""A Gaussian-process model of the strain energy, deciding when DFT is worth running.

The strain energy of a crystal relative to its relaxed reference is, to leading orders, a
homogeneous quadratic form of the strain (elasticity) plus a cubic correction (third-order
elastic constants). The kernel says exactly that,

.. math::

    k(x, x') = s_2^2 (x \\cdot x')^2 + s_3^2 (x \\cdot x')^3
               + s_r^2 \\exp(-|x - x'|^2 / 2\\ell^2),

with ``x`` the in-plane strain ``(exx, eyy, exy)`` in percent. The two polynomial terms span
every quadratic and cubic form (16 coefficients), so a handful of DFT points pins the model
down; the small squared-exponential term absorbs what the polynomials miss. The reference
itself is a free observation (zero energy at zero strain). Hyperparameters maximise the
marginal likelihood once there are enough points. Because the posterior variance does not
depend on the observed values, points whose DFT is still running are included when
deciding whether a new point needs DFT (pending points count as if known).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

STRAIN_UNIT = 0.01
"""Strain is scaled to percent inside the model, so the hyperparameters are O(1)."""


@dataclass(frozen=True)
class KernelParameters:
    """Hyperparameters of the strain-energy kernel (energies in meV/atom, strain in %).

    Parameters
    ----------
    quadratic : float
        ``s_2``: prior scale of the elastic (quadratic) energy at 1 % strain.
    cubic : float
        ``s_3``: prior scale of the anharmonic (cubic) energy at 1 % strain.
    residual : float
        ``s_r``: amplitude of the squared-exponential remainder.
    length : float
        ``ell``: its length scale, in % strain.
    noise : float
        Standard deviation of the DFT energies' numerical noise (meV/atom).
    """

    quadratic: float = 2.0
    cubic: float = 0.1
    residual: float = 0.02
    length: float = 2.0
    noise: float = 0.003

    def as_vector(self) -> np.ndarray:
        return np.log([self.quadratic, self.cubic, self.residual, self.length, self.noise])

    @classmethod
    def from_vector(cls, v: np.ndarray) -> KernelParameters:
        return cls(*np.exp(v))


_BOUNDS = np.log([(0.05, 100.0), (1e-4, 10.0), (1e-4, 2.0), (0.3, 20.0), (1e-4, 0.05)])


def kernel(a: np.ndarray, b: np.ndarray, p: KernelParameters) -> np.ndarray:
    """Covariance between strain sets ``a`` (n, 3) and ``b`` (m, 3), both in percent."""
    dot = a @ b.T
    sq = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * dot
    return (
        p.quadratic**2 * dot**2
        + p.cubic**2 * dot**3
        + p.residual**2 * np.exp(-0.5 * np.maximum(sq, 0.0) / p.length**2)
    )


class StrainEnergyGP:
    """Exact GP of the strain energy (meV/atom) over the in-plane strain.

    Parameters
    ----------
    parameters : KernelParameters, optional
        Starting hyperparameters (physics-based defaults).
    optimise_from : int
        Refit the hyperparameters by maximum marginal likelihood from this many DFT points
        (before that, the physics-based defaults: with fewer points than the 6 quadratic
        coefficients plus a few, the likelihood cannot tell the scales apart).

    Examples
    --------
    >>> gp = StrainEnergyGP()
    >>> gp.add([[0.01, 0.0, 0.0]], [1.0])
    >>> mean, std = gp.predict([[0.01, 0.0, 0.0]])
    """

    def __init__(self, parameters: KernelParameters | None = None, *, optimise_from: int = 12):
        self.parameters = parameters or KernelParameters()
        self.optimise_from = optimise_from
        # The reference: zero energy at zero strain, known without DFT.
        self._x = np.zeros((1, 3))
        self._y = np.zeros(1)
        self._factor = None

    @property
    def n_observations(self) -> int:
        """DFT points in the model (the free reference point not counted)."""
        return len(self._y) - 1

    def add(self, strains, energies_mev) -> None:
        """Add DFT energies (meV/atom) at strains (fractions, shape (n, 3)); refit."""
        x = np.atleast_2d(np.asarray(strains, float)) / STRAIN_UNIT
        y = np.atleast_1d(np.asarray(energies_mev, float))
        self._x = np.vstack([self._x, x])
        self._y = np.concatenate([self._y, y])
        if self.n_observations >= self.optimise_from:
            self.fit_hyperparameters()
        self._factor = None

    def _covariance(self, x: np.ndarray, p: KernelParameters) -> np.ndarray:
        k = kernel(x, x, p)
        k[np.diag_indices_from(k)] += p.noise**2 + 1e-10
        return k

    def _neg_log_marginal(self, v: np.ndarray) -> float:
        p = KernelParameters.from_vector(v)
        try:
            factor = cho_factor(self._covariance(self._x, p), lower=True)
        except np.linalg.LinAlgError:
            return 1e10
        alpha = cho_solve(factor, self._y)
        return float(0.5 * self._y @ alpha + np.sum(np.log(np.diag(factor[0]))))

    def fit_hyperparameters(self) -> KernelParameters:
        """Maximise the marginal likelihood (L-BFGS-B within physical bounds)."""
        best = self.parameters.as_vector()
        best_value = self._neg_log_marginal(best)
        for start in (best, KernelParameters().as_vector()):
            done = minimize(self._neg_log_marginal, start, method="L-BFGS-B", bounds=_BOUNDS)
            if done.fun < best_value:
                best, best_value = done.x, done.fun
        self.parameters = KernelParameters.from_vector(best)
        self._factor = None
        return self.parameters

    def predict(self, strains, pending=None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (meV/atom) at strains (fractions).

        Parameters
        ----------
        strains : array_like (n, 3)
        pending : array_like (m, 3), optional
            Strains whose DFT is on its way: they reduce the standard deviation as if
            known (the variance does not depend on the values); the mean ignores them.

        Returns
        -------
        mean, std : ndarray (n,)
        """
        x = np.atleast_2d(np.asarray(strains, float)) / STRAIN_UNIT
        p = self.parameters
        if self._factor is None:
            self._factor = cho_factor(self._covariance(self._x, p), lower=True)
        k_star = kernel(self._x, x, p)
        mean = k_star.T @ cho_solve(self._factor, self._y)
        train = self._x
        if pending is not None and len(pending):
            train = np.vstack([train, np.atleast_2d(np.asarray(pending, float)) / STRAIN_UNIT])
            factor = cho_factor(self._covariance(train, p), lower=True)
            k_star = kernel(train, x, p)
        else:
            factor = self._factor
        prior = np.diag(kernel(x, x, p))
        variance = prior - np.sum(k_star * cho_solve(factor, k_star), axis=0)
        return mean, np.sqrt(np.maximum(variance, 0.0))

    def copy(self) -> StrainEnergyGP:
        """An independent copy (same data and hyperparameters)."""
        other = StrainEnergyGP(replace(self.parameters), optimise_from=self.optimise_from)
        other._x, other._y = self._x.copy(), self._y.copy()
        return other
