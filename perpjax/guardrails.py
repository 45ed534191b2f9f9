"""Venue guardrails that act inside the simulation (DOMAIN.md §4, "Guardrails").

``CircuitBreaker``: after any asset's index moves by more than ``move`` (fraction)
over the last ``window`` steps, liquidations halt for ``halt`` steps (forced
flow queues up; the units stay liquidatable and are taken when the halt ends).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import concrete, positive


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
