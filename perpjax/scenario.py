"""Deterministic scenario inputs by step: shocks, replayed paths, depth bursts, oracle freezes,
forced stress windows (config ``events``; built by ``config.build_stress``)."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

from .checks import concrete


class Schedule(eqx.Module):
    """Deterministic inputs by step (row ``t - 1`` applies at step ``t``); None = not used.

    Attributes:
        log_return: (steps, assets) added to the simulated log returns (shocks), or,
            with ``replace``, the whole exogenous log return (a replayed real path).
        depth: (steps, assets) factor on book depth (cancel bursts).
        frozen: (steps,) the oracle keeps its last value (oracle freeze).
        stress: (steps,) stress regime forced on.
    """

    log_return: jax.Array | None = None
    depth: jax.Array | None = None
    frozen: jax.Array | None = None
    stress: jax.Array | None = None
    replace: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.replace and self.log_return is None:
            raise ValueError("replace: a replayed path needs its log returns")
        if concrete(*(x for x in (self.log_return, self.depth) if x is not None)):
            if self.log_return is not None and not np.all(np.isfinite(np.asarray(self.log_return))):
                raise ValueError("log_return: must be finite")
            if self.depth is not None and not np.all(np.asarray(self.depth) > 0):
                raise ValueError("depth: factors must be > 0")

    @staticmethod
    def at(table, t):
        return None if table is None else table[t - 1]

    @property
    def empty(self) -> bool:
        return all(x is None for x in (self.log_return, self.depth, self.frozen, self.stress))
