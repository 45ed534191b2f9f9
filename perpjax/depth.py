"""Book depth: the power-law depth model and the one place its factor is composed.

Depth model (DOMAIN.md §5). Cumulative depth on one side of the book within a
distance d of mid is a power law, ``D(d) = D0 (d / d0)^beta`` with ``D0`` USD of
depth within ``d0`` (e.g. the "depth within 50 bp" that venues and the shared
Hyperliquid snapshots report). Walking the book for notional Q reaches
``d(Q) = d0 (Q / D0)^e`` with ``e = 1/beta``, and the average fill sits at

    slip(Q) = spread/2 + d(Q) / (1 + e)        (fraction of mid)

so the cost ``Q slip(Q)`` grows like ``Q^(1+e)``: doubling size more than
doubles cost. ``e = 0.5`` (default) is the square-root law.

The depth available at a step is ``D0`` times a factor (``depth_factor``): the
vol-driven decay, the scenario's depth bursts and the stress regime's multiplier.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .checks import concrete, nonneg, positive


class DepthModel(eqx.Module):
    """Power-law book depth per asset.

    Attributes:
        depth_usd: one-side depth D0 within ``depth_distance`` of mid (USD), (assets,).
        depth_distance: the distance d0 at which D0 is quoted (fraction; 0.005 = 50 bp).
        exponent: e = 1/beta; the far edge of a walk moves as Q^e (0.5 = square root).
        spread: quoted spread (fraction of mid), (assets,).
        forced_cost: extra cost of forced execution (fraction of notional), on top of the walk.
        vol_elasticity: depth decays as realised volatility rises:
            ``depth = D0 * clip((sigma_ref / sigma_realised)^vol_elasticity, depth_floor, 1)``,
            sigma_ref the model's diffusion vol, sigma_realised an EWMA of squared step
            log returns with half-life ``vol_halflife_steps`` (0 disables).
        depth_floor: smallest fraction of D0 left when volatility spikes.
        vol_halflife_steps: half-life of the realised-volatility EWMA (steps).
    """

    depth_usd: jax.Array
    spread: jax.Array
    depth_distance: float = eqx.field(static=True, default=0.005)
    exponent: float = eqx.field(static=True, default=0.5)
    forced_cost: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    vol_elasticity: float = eqx.field(static=True, default=0.0)
    depth_floor: float = eqx.field(static=True, default=0.1)
    vol_halflife_steps: int = eqx.field(static=True, default=15)

    def __check_init__(self):
        if concrete(self.depth_usd, self.spread):
            positive("depth_usd", self.depth_usd)
            nonneg("spread", self.spread)
        if not (self.depth_distance > 0):
            raise ValueError(f"depth_distance: must be > 0 (got {self.depth_distance})")
        if not (0 < self.exponent <= 2):
            raise ValueError(f"exponent: must lie in (0, 2] (got {self.exponent})")
        if concrete(self.forced_cost):
            nonneg("forced_cost", self.forced_cost)
        if not self.vol_elasticity >= 0:
            raise ValueError(f"vol_elasticity: must be >= 0 (got {self.vol_elasticity})")
        if not 0 < self.depth_floor <= 1:
            raise ValueError(f"depth_floor: must lie in (0, 1] (got {self.depth_floor})")
        if not (isinstance(self.vol_halflife_steps, int) and self.vol_halflife_steps >= 1):
            raise ValueError(f"vol_halflife_steps: must be an integer >= 1 (got {self.vol_halflife_steps})")

    def depth_factor(self, realised_var, reference_var):
        """Fraction of D0 available given the realised and reference per-step variances, (assets,)."""
        if self.vol_elasticity == 0:
            return jnp.ones_like(realised_var)
        ratio = reference_var / jnp.maximum(realised_var, 1e-30)
        return jnp.clip(ratio ** (0.5 * self.vol_elasticity), self.depth_floor, 1.0)

    def quoted(self, factor=None):
        """Depth within d0 per asset (USD) after ``factor`` (see ``depth_factor``), (assets,)."""
        return self.depth_usd if factor is None else self.depth_usd * factor

    def slippage(self, notional, asset=None, factor=None):
        """Average fill distance from mid for a market order of ``notional`` USD.

        ``notional`` is (..., assets), or (positions,) with ``asset`` (positions,);
        ``factor`` scales the depth (see ``depth_factor``), same shape as ``notional``.
        """
        depth, spread = (self.depth_usd, self.spread) if asset is None else (self.depth_usd[asset], self.spread[asset])
        if factor is not None:
            depth = depth * factor
        # q floored at 1e-30: the same value to 1e-15 of d0 (and its cost is zero there), but a finite
        # derivative at an empty order, so gradients through the calibration's relaxed engine stay finite.
        q = jnp.maximum(jnp.abs(notional) / depth, 1e-30)
        reach = self.depth_distance * (jnp.sqrt(q) if self.exponent == 0.5 else q**self.exponent)
        return 0.5 * spread + reach / (1.0 + self.exponent) + self.forced_cost


def depth_factor(depth: DepthModel, r, realised_var, reference_var, *, burst=None, stress=None,
                 regime_factor=None):
    """The fraction of quoted depth left this step, composed once for fills and price impact.

    Args:
        depth: the depth model (its ``vol_elasticity`` and half-life drive the decay).
        r: (assets,) this step's log return; ``realised_var``: its EWMA of squares so far;
            ``reference_var``: the per-step variance the depth is quoted at.
        burst: (assets,) the scenario's depth factor this step (cancel bursts), or None.
        stress, regime_factor: the stress regime this step and its depth multiplier, or None.

    Returns:
        (updated realised variance, (assets,) factor or None when nothing scales the depth).
    """
    dfac = None
    if depth.vol_elasticity:
        a_v = 0.5 ** (1.0 / depth.vol_halflife_steps)
        realised_var = a_v * realised_var + (1.0 - a_v) * r * r
        dfac = depth.depth_factor(realised_var, reference_var)
    if burst is not None:
        dfac = burst if dfac is None else dfac * burst
    if regime_factor is not None:
        rf = jnp.where(stress, regime_factor, 1.0)
        dfac = rf if dfac is None else dfac * rf
    return realised_var, dfac
