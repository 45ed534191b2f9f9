"""Risk metrics from an ``Outcome``: intervals, tail measures with Monte Carlo errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .cascade import CASCADE_EDGES, drawdown_fraction
from .engine.outputs import account_columns, path_columns

LEVELS = (0.95, 0.99, 0.999)
Z95 = 1.959963984540054


def wilson(k, n, z: float = Z95):
    """Wilson score interval for a binomial proportion; arrays in, (low, high) out."""
    k = np.asarray(k, np.float64)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # Exact ends at k = 0 and k = n (the formula gives them up to rounding).
    return np.where(k == 0, 0.0, centre - half), np.where(k == n, 1.0, centre + half)


def var_es(x, alpha: float):
    """Value-at-risk and expected shortfall of losses ``x`` at level ``alpha``, with standard errors.

    VaR is the empirical alpha-quantile; its SE comes from the distribution-free
    binomial interval of order statistics (width / 2z). ES is the mean of
    ``Y = VaR + (x - VaR)^+ / (1 - alpha)`` (Rockafellar-Uryasev), SE = std(Y)/sqrt(n).
    """
    x = np.sort(np.asarray(x, np.float64))
    n = x.size
    var = float(np.quantile(x, alpha, method="inverted_cdf"))
    half = Z95 * math.sqrt(n * alpha * (1 - alpha))
    lo = int(np.clip(math.floor(n * alpha - half), 0, n - 1))
    hi = int(np.clip(math.ceil(n * alpha + half), 0, n - 1))
    var_se = (x[hi] - x[lo]) / (2 * Z95)
    y = var + np.maximum(x - var, 0.0) / (1 - alpha)
    return var, float(y.mean()), float(var_se), float(y.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def _level_key(alpha: float) -> str:
    return f"{alpha * 100:g}".replace(".", "_")


def summarize(out, model, labels, cfg, paths_table: bool = True) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """(venue summary dict, per-unit DataFrame, per-path DataFrame or None without ``paths_table``).

    ``out``: an ``Outcome`` or a ``store.StoredOutcome`` (per-path fields read one at a time)."""
    n = out.n_paths
    step_s = model.grid.step_seconds
    s = {"paths": n, "steps": out.n_steps, "seed": cfg["seed"], "step_seconds": step_s,
         "horizon_seconds": model.grid.horizon_seconds, "units": model.n_units, "dtype": cfg["dtype"]}
    any_liq = out.path_n_liquidations > 0
    s["p_any_liquidation"] = float(any_liq.mean())
    s["p_any_liquidation_se"] = float(math.sqrt(s["p_any_liquidation"] * (1 - s["p_any_liquidation"]) / n))
    s["expected_liquidations"] = float(out.path_n_liquidations.mean())
    s["bad_debt_mean"] = float(out.path_bad_debt.mean())
    s["bad_debt_mean_se"] = float(out.path_bad_debt.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    s["p_bad_debt"] = float((out.path_bad_debt > 0).mean())
    s["trader_loss_mean"] = float(out.path_trader_loss.mean())
    s["fees_mean"] = float(out.path_fees.mean())
    s["funding_paid_mean"] = float(out.path_funding_net.mean())
    # Drawdown of the insurance fund: USD below its starting balance, >= 0.
    drawdown = -np.minimum(out.path_fund_min, 0.0)
    for name, x in (("bad_debt", out.path_bad_debt), ("trader_loss", out.path_trader_loss),
                    ("insurance_fund_drawdown", drawdown)):
        for a in LEVELS:
            v, e, vse, ese = var_es(x, a)
            k = _level_key(a)
            s[f"{name}_var_{k}"], s[f"{name}_es_{k}"] = v, e
            s[f"{name}_var_{k}_se"], s[f"{name}_es_{k}_se"] = vse, ese
    for q in (0.5, 0.9, 0.99, 0.999):
        s[f"liquidated_notional_p{_level_key(q)}"] = float(np.quantile(out.path_liq_notional, q))
    s["liquidated_notional_mean"] = float(out.path_liq_notional.mean())
    s["liquidation_events_mean"] = float(out.path_liq_events.mean())
    s["slippage_mean"] = float(out.path_slippage.mean())
    fund = float(cfg["insurance_fund"])
    s["insurance_fund"] = fund
    short = (out.path_adl + out.path_uncovered) > 0  # the fund could not pay some bad debt
    s["p_insurance_fund_depleted"] = float(short.mean())
    s["p_insurance_fund_depleted_se"] = float(math.sqrt(short.mean() * (1 - short.mean()) / n))
    s["p_adl"] = float((out.path_adl > 0).mean())
    s["adl_mean"] = float(out.path_adl.mean())
    s["adl_p99"] = float(np.quantile(out.path_adl, 0.99))
    s["uncovered_bad_debt_mean"] = float(out.path_uncovered.mean())
    s["backstop_pnl_mean"] = float(out.path_backstop_pnl.mean())
    s["p_backstop_loss"] = float((out.path_backstop_pnl < 0).mean())
    s["circuit_breaker_fires_mean"] = float(out.path_breaker_fires.mean())
    s["throttled_steps_mean"] = float(out.path_throttled_steps.mean())
    s["over_liquidated_notional_mean"] = float(out.path_over_notional.mean())
    s["excess_liquidation_cost_mean"] = float(out.path_excess_cost.mean())
    fired = cfg.get("guardrails_fired", {})
    s["guardrail_initial_margin_cuts"] = len(fired.get("initial_margin_cuts", {}))
    s["guardrail_open_interest_cuts"] = len(fired.get("open_interest_cuts", {}))
    events = out.liq_events_sum.sum()
    s["mark_lag_artefact_share"] = float(out.artefacts_sum.sum() / events) if events else 0.0
    s["p_uncovered_bad_debt"] = float((out.path_uncovered > 0).mean())
    s["stress_time_share"] = float(out.path_stress_steps.mean() / out.n_steps)
    if out.cascade_on:
        s.update(cascade_summary(out, cfg["asset_names"]))
    lo, hi = wilson(out.liq_count, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_liq = np.where(out.liq_count > 0, out.liq_step_sum / np.maximum(out.liq_count, 1) * step_s / 3600.0, np.nan)
    e0 = np.asarray(_initial_equity(model), np.float64)
    accounts = pd.DataFrame({
        "unit": labels.unit, "account": labels.account, "mode": labels.mode,
        "initial_equity": e0,
        "p_liquidation": out.liq_count / n, "p_liquidation_lo95": lo, "p_liquidation_hi95": hi,
        "mean_hours_to_liquidation": t_liq,
        **account_columns(out),  # every Stat with an ``account`` column (engine.outputs)
        "mark_lag_artefact_share": np.where(out.liq_events_sum > 0, out.artefacts_sum / np.maximum(
            out.liq_events_sum, 1), 0.0),
    })
    accounts.insert(3, "tier", _dominant_tier(model, cfg))
    paths = pd.DataFrame(path_columns(out, cfg["asset_names"])) if paths_table else None  # engine.outputs
    return s, accounts, paths


def _dominant_tier(model, cfg) -> list[str]:
    """'ASSET tier k' of each unit's largest position at entry (1-based tier, as venues number them)."""
    size = np.asarray(model.book.size, np.float64)
    entry = np.asarray(model.book.entry, np.float64)
    notional = np.abs(size) * entry
    a = notional.argmax(axis=1)
    k = model.ladder.tier_index(notional)[np.arange(len(a)), a]
    return [f"{cfg['asset_names'][i]} tier {j + 1}" for i, j in zip(a, k, strict=True)]


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


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else (1.0 if a == 0 else math.inf)


def cascade_summary(out, names) -> dict:
    """Cascade metrics (DOMAIN.md section 6): amplification of the price drawdown by forced
    flow (with feedback / without, on the same random paths), chained liquidation rounds,
    episode sizes and their distribution."""
    s = {}
    dd, dd0 = drawdown_fraction(out.path_drawdown), drawdown_fraction(out.path_drawdown_exog)
    for i, name in enumerate(names):
        s[f"drawdown_mean_{name}"] = float(dd[:, i].mean())
        s[f"drawdown_no_feedback_mean_{name}"] = float(dd0[:, i].mean())
        s[f"cascade_amplification_{name}"] = _ratio(dd[:, i].mean(), dd0[:, i].mean())
        s[f"cascade_amplification_p99_{name}"] = _ratio(np.quantile(dd[:, i], 0.99), np.quantile(dd0[:, i], 0.99))
    worst, worst0 = dd.max(axis=1), dd0.max(axis=1)  # each path's largest drawdown over the assets
    s["cascade_amplification"] = _ratio(worst.mean(), worst0.mean())
    s["cascade_amplification_p99"] = _ratio(np.quantile(worst, 0.99), np.quantile(worst0, 0.99))
    s["cascade_rounds_mean"] = float(out.path_cascade_rounds.mean())
    s["cascade_rounds_p99"] = float(np.quantile(out.path_cascade_rounds, 0.99))
    s["cascade_rounds_max"] = float(out.path_cascade_rounds.max())
    s["cascade_episodes_mean"] = float(out.path_cascade_episodes.mean())
    s["cascade_size_p50"] = float(np.quantile(out.path_cascade_max_notional, 0.5))
    s["cascade_size_p99"] = float(np.quantile(out.path_cascade_max_notional, 0.99))
    edges = (0.0, *CASCADE_EDGES, math.inf)
    s["cascade_size_distribution"] = [
        {"notional_from": edges[k], "notional_to": edges[k + 1] if k + 1 < len(edges) - 1 else None,
         "episodes": int(c)}
        for k, c in enumerate(out.cascade_hist) if c > 0]
    return s


def _initial_equity(model):
    from .engine import initial_equity

    return initial_equity(model)
