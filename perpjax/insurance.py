"""Insurance fund and auto-deleveraging (ADL) (DOMAIN.md §4).

Bad debt left by bankrupt liquidations is paid by the insurance fund while its
balance lasts. With ADL on, what the fund cannot pay is charged to profitable
positions on the other side of the bankrupt positions, ranked by
PnL% x leverage (Binance's ADL ranking; DOMAIN.md), each at most its profit
on those positions; a charged unit's opposite positions are closed at a price
that is worse than mark by exactly its charge (the bankruptcy price of the
transfer). A unit with no opposite profitable position never pays. What
neither covers is reported as uncovered bad debt (a loss of the venue).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .layout import as_spreader


class Cover(NamedTuple):
    fund_paid: jax.Array  # () paid by the fund
    charge: jax.Array  # (units,) ADL charge per unit (>= 0)
    size: jax.Array  # (positions,) size after ADL closes
    collateral: jax.Array  # (units,) collateral after ADL
    uncovered: jax.Array  # () bad debt neither the fund nor ADL covered


PAIRWISE_MAX_UNITS = 256


def _capacity_ranked_ahead(score, cap):
    """For each unit, the total capacity of the units ranked ahead of it (higher score first,
    ties by index). Small books compare all pairs (fuses into the step; a sort per step cost
    3.6x the whole default-book step on CPU); large books sort."""
    n = score.shape[0]
    if n <= PAIRWISE_MAX_UNITS:
        idx = jnp.arange(n)
        ahead = (score[None, :] > score[:, None]) | ((score[None, :] == score[:, None]) & (idx[None, :] < idx[:, None]))
        return jnp.sum(jnp.where(ahead, cap[None, :], 0.0), axis=1)
    order = jnp.argsort(-score)
    cap_sorted = cap[order]
    return (jnp.cumsum(cap_sorted) - cap_sorted)[jnp.argsort(order)]


def cover_bad_debt(bad, balance, *, adl: bool, bankrupt, size_before, size, collateral, entry, mark,
                   asset_onehot, unit, unit_sum) -> Cover:
    """Pay this step's bad debt from the fund, then by ADL.

    Args:
        bad: (units,) bad debt of this step.
        balance: () fund balance available (USD, fees of this step included).
        bankrupt: (units,) bool, units closed out with bad debt this step.
        size_before: (positions,) sizes before this step's liquidations (sides of the bankrupt).
        size, collateral: (positions,), (units,) after liquidations.
        entry, mark: (positions,).
        asset_onehot: (positions, assets) 0/1.
    """
    total = jnp.sum(bad)
    fund_paid = jnp.minimum(total, jnp.maximum(balance, 0.0))
    rest = total - fund_paid
    if not adl:
        return Cover(fund_paid, jnp.zeros_like(collateral), size, collateral, rest)
    # Side of the bankrupt flow per asset; opposite, profitable positions of solvent units can be charged.
    unit = as_spreader(unit)
    hi = jax.lax.Precision.HIGHEST
    net = jnp.matmul(jnp.where(unit(bankrupt), size_before, 0.0), asset_onehot, precision=hi)  # (assets,)
    opposite = (size * jnp.matmul(asset_onehot, net, precision=hi) < 0) & ~unit(bankrupt)
    pnl = size * (mark - entry)
    profit = jnp.where(opposite, jnp.maximum(pnl, 0.0), 0.0)
    cap = unit_sum(profit)
    equity = collateral + unit_sum(pnl)
    notional = unit_sum(jnp.abs(size) * mark)
    safe = jnp.maximum(equity, 1e-9)
    score = jnp.where(cap > 0, (cap / safe) * (notional / safe), -jnp.inf)
    before = _capacity_ranked_ahead(score, cap)
    charge = jnp.clip(rest - before, 0.0, cap)
    hit = unit(charge > 0) & opposite
    realized = unit_sum(jnp.where(hit, pnl, 0.0))
    new_size = jnp.where(hit, 0.0, size)
    # What ADL cannot cover: the shortfall beyond all counterparties' capacity (no rounding residue).
    uncovered = jnp.maximum(rest - jnp.sum(cap), 0.0)
    return Cover(fund_paid, charge, new_size, collateral + realized - charge, uncovered)
