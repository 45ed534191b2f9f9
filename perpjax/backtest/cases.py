"""The positions a backtest forecasts for, and what happened to them in the bars.

A case is one isolated position opened at the origin's price ``p0`` (the close of the last bar
before the origin) with leverage ``L`` (margin = notional / L) under a flat maintenance rate ``m``,
marked on the index. Its equity falls to its maintenance margin at

    long:  p = p0 (1 - 1/L) / (1 - m)        short: p = p0 (1 + 1/L) / (1 + m)

(equity = notional/L + size (p - p0), MM = m |size| p). **Realised rule**: the position counts as
liquidated within the horizon when a bar of the horizon trades through that price: a bar's low at
or below it (long) or its high at or above it (short). Bars are last-trade prices, not mark prices:
a wick counts even where a venue's mark (an index average) would smooth it, so realised counts
are an upper bound for a mark-based venue (DOMAIN.md §7b). The model's side uses the same
continuous-monitoring rule: the index is simulated bar by bar and crossings inside a step are
caught by the Brownian-bridge correction (``liquidation.bridge``).

The 1-day loss of an unlevered position is ``1 - P_T/p0`` (long) or ``P_T/p0 - 1`` (short), P_T the
close of the horizon's last bar; its VaR is forecast from the simulated distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDES = ("long", "short")


@dataclass(frozen=True)
class Case:
    """One isolated position of the backtest's position set."""

    asset: str
    side: str
    leverage: float
    mmr: float

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"side: must be 'long' or 'short' (got {self.side!r})")
        if not self.leverage >= 1:
            raise ValueError(f"leverage: must be >= 1 (got {self.leverage})")
        if not 0 <= self.mmr < 1 / self.leverage:
            raise ValueError(f"mmr: must lie in [0, 1/leverage) = [0, {1 / self.leverage:g}) (got {self.mmr})")

    @property
    def name(self) -> str:
        return f"{self.asset}_{self.side}_{self.leverage:g}x"

    def liquidation_price(self, p0):
        """Price at which equity equals maintenance margin (see the module docstring)."""
        if self.side == "long":
            return p0 * (1 - 1 / self.leverage) / (1 - self.mmr)
        return p0 * (1 + 1 / self.leverage) / (1 + self.mmr)

    def liquidated(self, p0: float, highs, lows) -> bool:
        """Realised rule: a bar of the horizon trades through the liquidation price."""
        lp = self.liquidation_price(p0)
        return bool(np.min(lows) <= lp) if self.side == "long" else bool(np.max(highs) >= lp)

    def account(self, p0: float, notional: float = 1000.0) -> dict:
        """The case as an isolated account of a perpjax config."""
        size = notional / p0 * (1 if self.side == "long" else -1)
        return {"id": self.name, "mode": "isolated",
                "positions": [{"asset": self.asset, "size": size, "entry": p0, "margin": notional / self.leverage}]}


def default_cases(assets, leverages=(10, 20, 50), mmr: float = 0.005) -> list[Case]:
    """Isolated longs and shorts at several leverages on every asset (4 assets x 2 x 3 = 24 cases)."""
    return [Case(a, side, float(lev), float(mmr)) for a in assets for side in SIDES for lev in leverages]


def position_loss(side: str, log_return):
    """Loss of an unlevered position per unit of notional from the asset's log return."""
    r = np.asarray(log_return, np.float64)
    return -np.expm1(r) if side == "long" else np.expm1(r)
