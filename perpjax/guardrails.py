"""Venue guardrails (DOMAIN.md §4, "Guardrails"): at entry (leverage caps, open-interest
limits) and inside the simulation (circuit breaker).

``CircuitBreaker``: after any asset's index moves by more than ``move`` (fraction)
over the last ``window`` steps, liquidations halt for ``halt`` steps (forced
flow queues up; the units stay liquidatable and are taken when the halt ends).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import concrete, positive


class CircuitBreaker(eqx.Module):
    """Halt liquidations for ``halt`` steps after a move of more than ``move`` within ``window`` steps."""

    move: jax.Array
    window: int = eqx.field(static=True, default=5)
    halt: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        if concrete(self.move):
            positive("move", self.move)
        for name in ("window", "halt"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name}: must be an integer number of steps >= 1 (got {v})")

    def init(self, index):
        """Ring buffer of the last ``window`` index vectors, (window, assets)."""
        return jnp.broadcast_to(index, (self.window,) + index.shape)

    def update(self, ring, index, t, halt_until):
        """New ring, new halt_until, and whether the breaker fired at step ``t``."""
        old = ring[0]
        moved = jnp.max(jnp.abs(index / old - 1.0)) > self.move
        fire = moved & (t >= halt_until)
        ring = jnp.concatenate([ring[1:], index[None]], axis=0)
        return ring, jnp.where(fire, t + self.halt, halt_until), fire


def enforce_initial_margin(collateral, size, entry, ladder):
    """Leverage cap at entry: cut each unit whose collateral is below its initial margin.

    Initial margin of a unit = sum over its positions of notional x IMR of the tier the
    notional sits in (at entry price). A unit over the cap has all its positions scaled
    by the largest factor in (0, 1] that meets the cap (bisection to 1e-9).
    Returns (new size, {unit index: factor}) - the factor for every unit that was cut.
    """
    size = np.array(size, np.float64)
    entry = np.asarray(entry, np.float64)
    coll = np.asarray(collateral, np.float64)

    def im(k, u):
        return float(np.sum(ladder.initial(np.abs(size[u] * k) * entry[u])))

    cuts = {}
    for u in range(size.shape[0]):
        if im(1.0, u) <= coll[u] * (1 + 1e-12):
            continue
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if im(mid, u) <= coll[u] else (lo, mid)
        size[u] *= lo
        cuts[u] = lo
    return size, cuts


def enforce_open_interest(size, entry, limits):
    """Open-interest limits: cap each asset's total long and total short notional at entry.

    ``limits`` maps asset index -> USD cap per side. Positions on a side over the cap are
    scaled pro rata. Returns (new size, {(asset, "long"|"short"): factor}) for every cut.
    """
    size = np.array(size, np.float64)
    entry = np.asarray(entry, np.float64)
    cuts = {}
    for a, cap in limits.items():
        for side, sel in (("long", size[:, a] > 0), ("short", size[:, a] < 0)):
            oi = float(np.sum(np.abs(size[sel, a]) * entry[sel, a]))
            if oi > cap:
                k = cap / oi
                size[sel, a] *= k
                cuts[(a, side)] = k
    return size, cuts
