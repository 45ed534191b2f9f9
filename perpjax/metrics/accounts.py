"""The per-unit table of a run (one row per margin unit) and its roll-up per maintenance tier."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.outputs import account_columns
from .tails import MIN_TAIL_PATHS, wilson


def account_table(out, model, labels, cfg) -> pd.DataFrame:
    """One row per margin unit: P(liquidation) with its 95 % Wilson interval, the mean time to the first
    liquidation over the paths that liquidate it (NaN where none), every ``Stat`` with an ``account``
    column (``engine.outputs``), the mark-lag artefact share, and the unit's dominant tier at entry.
    ``expected_bad_debt_se`` is NaN where fewer than ``MIN_TAIL_PATHS`` paths liquidate the unit or none
    gives it bad debt."""
    n = out.n_paths
    lo, hi = wilson(out.liq_count, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_liq = np.where(out.liq_count > 0, out.liq_step_sum / np.maximum(out.liq_count, 1)
                         * model.grid.step_seconds / 3600.0, np.nan)
    accounts = pd.DataFrame({
        "unit": labels.unit, "account": labels.account, "mode": labels.mode,
        "initial_equity": np.asarray(_initial_equity(model), np.float64),
        "p_liquidation": out.liq_count / n, "p_liquidation_lo95": lo, "p_liquidation_hi95": hi,
        "mean_hours_to_liquidation": t_liq,
        **account_columns(out),
        "mark_lag_artefact_share": np.where(out.liq_events_sum > 0, out.artefacts_sum / np.maximum(
            out.liq_events_sum, 1), 0.0),
    })
    # Bad debt needs a liquidation: below MIN_TAIL_PATHS liquidated paths (or with no bad debt at all)
    # fewer than that many paths carry the unit's bad debt, and its SE is not estimated (NaN), as in the
    # summary (``tails.mean_se``).
    few = (out.liq_count < MIN_TAIL_PATHS) | (accounts["expected_bad_debt"].to_numpy() == 0)
    accounts["expected_bad_debt_se"] = np.where(few, np.nan, accounts["expected_bad_debt_se"].to_numpy())
    accounts.insert(3, "tier", dominant_tier(model, cfg["asset_names"]))
    return accounts


def dominant_tier(model, asset_names) -> list[str]:
    """'ASSET tier k' of each unit's largest position at entry (1-based tier, as venues number them)."""
    size = np.asarray(model.book.size, np.float64)
    entry = np.asarray(model.book.entry, np.float64)
    notional = np.abs(size) * entry
    a = notional.argmax(axis=1)
    k = model.ladder.tier_index(notional)[np.arange(len(a)), a]
    return [f"{asset_names[i]} tier {j + 1}" for i, j in zip(a, k, strict=True)]


def by_tier(accounts: pd.DataFrame) -> pd.DataFrame:
    """Per tier (each unit's dominant tier at entry): the number of units, the mean over the tier's units
    of each per-unit metric (``*_mean_per_unit``) and, for the additive USD and count metrics, their sum
    over the tier's units (``*_sum_over_units``). Shares and probabilities are only averaged."""
    mean_cols = ["p_liquidation", "expected_liquidation_events", "expected_loss", "expected_bad_debt",
                 "expected_slippage", "expected_over_liquidated_notional", "expected_excess_cost",
                 "mark_lag_artefact_share", "p_adl", "expected_adl_charge", "p_starts_cascade",
                 "expected_liquidated_notional"]
    sum_cols = ["expected_liquidation_events", "expected_loss", "expected_bad_debt", "expected_slippage",
                "expected_over_liquidated_notional", "expected_excess_cost", "expected_adl_charge",
                "expected_liquidated_notional"]
    grouped = accounts.groupby("tier")
    g = grouped[mean_cols].mean().add_suffix("_mean_per_unit")
    s = grouped[sum_cols].sum().add_suffix("_sum_over_units")
    out = pd.concat([g, s], axis=1)
    out.insert(0, "units", grouped.size())
    return out.reset_index()


def _initial_equity(model):
    from ..engine import initial_equity

    return initial_equity(model)
