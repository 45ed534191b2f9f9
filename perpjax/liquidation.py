"""Forced execution: depth model, liquidation trigger and full close.

Depth model (DOMAIN.md §5). Cumulative depth on one side of the book within a
distance d of mid is a power law, ``D(d) = D0 (d / d0)^beta`` with ``D0`` USD of
depth within ``d0`` (e.g. the "depth within 50 bp" that venues and the shared
Hyperliquid snapshots report). Walking the book for notional Q reaches
``d(Q) = d0 (Q / D0)^e`` with ``e = 1/beta``, and the average fill sits at

    slip(Q) = spread/2 + d(Q) / (1 + e)        (fraction of mid)

so the cost ``Q slip(Q)`` grows like ``Q^(1+e)``: doubling size more than
doubles cost. ``e = 0.5`` (default) is the square-root law.

Full close (this module): when a unit's equity at mark falls below its
maintenance margin at a check, every position is closed at the fill price
(mid moved against the position by ``slip``), the liquidation fee
``fee_rate * |notional at fill|`` is taken from what equity remains, and any
equity below zero after the fill is bad debt, which the insurance fund covers.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import concrete, nonneg, positive


class DepthModel(eqx.Module):
    """Power-law book depth per asset.

    Attributes:
        depth_usd: one-side depth D0 within ``depth_distance`` of mid (USD), (assets,).
        depth_distance: the distance d0 at which D0 is quoted (fraction; 0.005 = 50 bp).
        exponent: e = 1/beta; the far edge of a walk moves as Q^e (0.5 = square root).
        spread: quoted spread (fraction of mid), (assets,).
    """

    depth_usd: jax.Array
    spread: jax.Array
    depth_distance: float = eqx.field(static=True, default=0.005)
    exponent: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if concrete(self.depth_usd, self.spread):
            positive("depth_usd", self.depth_usd)
            nonneg("spread", self.spread)
        if not (self.depth_distance > 0):
            raise ValueError(f"depth_distance: must be > 0 (got {self.depth_distance})")
        if not (0 < self.exponent <= 2):
            raise ValueError(f"exponent: must lie in (0, 2] (got {self.exponent})")

    def slippage(self, notional, asset=None):
        """Average fill distance from mid for a market order of ``notional`` USD.

        ``notional`` is (..., assets), or (positions,) with ``asset`` (positions,).
        """
        depth, spread = (self.depth_usd, self.spread) if asset is None else (self.depth_usd[asset], self.spread[asset])
        q = jnp.abs(notional) / depth
        reach = self.depth_distance * (jnp.sqrt(q) if self.exponent == 0.5 else q**self.exponent)
        return 0.5 * spread + reach / (1.0 + self.exponent)


class Liquidation(eqx.Module):
    """Trigger and execution of a full close.

    Attributes:
        depth: the book the forced order walks.
        fee_rate: liquidation fee (fraction of filled notional), to the insurance fund.
        check_every: the engine checks margin every ``check_every`` steps (discrete monitoring).
        bridge: continuous monitoring between steps through the Brownian-bridge
            crossing probability of the margin gap (requires ``check_every == 1``).
    """

    depth: DepthModel
    fee_rate: jax.Array
    check_every: int = eqx.field(static=True, default=1)
    bridge: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if concrete(self.fee_rate):
            nonneg("fee_rate", self.fee_rate)
        if not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise ValueError(f"check_every: must be an integer >= 1 (got {self.check_every})")
        if self.bridge and self.check_every != 1:
            raise ValueError("bridge: the bridge correction models continuous monitoring; it needs check_every = 1")

    def close_out(self, collateral, size, entry, mid, asset, unit_sum):
        """Close every position of each unit at the depth-model fill.

        Args:
            collateral: (units,) USD, funding already applied.
            size, entry: (positions,) signed size and entry price of each open position.
            mid: (positions,) perp mid of each position's asset.
            asset: (positions,) asset index of each position (selects its depth).
            unit_sum: maps a (positions,) array to its (units,) sums.

        Returns:
            equity_after_fee (units,) >= 0, fee (units,), bad_debt (units,), notional (units,).
        """
        notional_mid = jnp.abs(size) * mid
        fill = mid * (1.0 - jnp.sign(size) * self.depth.slippage(notional_mid, asset))
        equity_fill = collateral + unit_sum(size * (fill - entry))
        notional = unit_sum(jnp.abs(size) * fill)
        fee = jnp.clip(self.fee_rate * notional, 0.0, jnp.maximum(equity_fill, 0.0))
        bad_debt = jnp.maximum(-equity_fill, 0.0)
        return jnp.maximum(equity_fill, 0.0) - fee, fee, bad_debt, notional


def bridge_cross_probability(gap0, gap1, variance):
    """P(a Brownian bridge from gap0 to gap1 with total variance ``variance`` touches 0).

    ``exp(-2 gap0 gap1 / variance)`` for gap0, gap1 > 0 (DOMAIN.md §7 gives the
    complement, the no-touch probability); 1 if either end is at or below zero;
    0 when the variance is zero.
    """
    both_up = (gap0 > 0) & (gap1 > 0)
    safe_var = jnp.where(variance > 0, variance, 1.0)
    p = jnp.exp(-2.0 * jnp.maximum(gap0, 0.0) * jnp.maximum(gap1, 0.0) / safe_var)
    p = jnp.where(variance > 0, p, 0.0)
    return jnp.where(both_up, p, 1.0)
