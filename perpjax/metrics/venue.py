"""The venue summary of a run (``summarize``): means over paths, tails with their standard errors,
quantiles, and the cascade metrics, streamed over the run's per-path columns (``stream.PathTable``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..cascade import CASCADE_EDGES, drawdown_fraction
from ..engine.outputs import path_table
from .accounts import account_table
from .stream import PathTable, Quantile, moments, per_path, quantiles
from .tails import LEVELS, MIN_TAIL_PATHS, beyond_key, level_key, mean_se, proportion_se, var_es_table


def _positive(x):
    return x > 0


def _drawdown(fund_min):
    """The insurance fund's drawdown: USD below its starting balance, >= 0."""
    return -np.minimum(fund_min, 0.0)


# The summary's means over paths: metric -> per-path value (``PerPath``).
MEANS = {
    "p_any_liquidation": per_path("path_n_liquidations", fn=_positive),
    "expected_liquidations": per_path("path_n_liquidations"),
    "bad_debt_mean": per_path("path_bad_debt", sd=True),
    "p_bad_debt": per_path("path_bad_debt", fn=_positive),
    "trader_loss_mean": per_path("path_trader_loss"),
    "fees_mean": per_path("path_fees"),
    "funding_paid_mean": per_path("path_funding_net"),
    "liquidated_notional_mean": per_path("path_liq_notional"),
    "liquidation_events_mean": per_path("path_liq_events"),
    "slippage_mean": per_path("path_slippage"),
    "p_insurance_fund_depleted": per_path("path_adl", "path_uncovered", fn=lambda a, u: (a + u) > 0),
    "p_adl": per_path("path_adl", fn=_positive),
    "adl_mean": per_path("path_adl"),
    "uncovered_bad_debt_mean": per_path("path_uncovered"),
    "backstop_pnl_mean": per_path("path_backstop_pnl"),
    "p_backstop_loss": per_path("path_backstop_pnl", fn=lambda x: x < 0),
    "circuit_breaker_fires_mean": per_path("path_breaker_fires"),
    "throttled_steps_mean": per_path("path_throttled_steps"),
    "over_liquidated_notional_mean": per_path("path_over_notional"),
    "excess_liquidation_cost_mean": per_path("path_excess_cost"),
    "p_uncovered_bad_debt": per_path("path_uncovered", fn=_positive),
    "stress_time_share": per_path("path_stress_steps"),
}
# Loss distributions with VaR / ES at ``LEVELS``: name -> per-path loss (USD).
TAILS = {"bad_debt": per_path("path_bad_debt"), "trader_loss": per_path("path_trader_loss"),
         "insurance_fund_drawdown": per_path("path_fund_min", fn=_drawdown)}


def _venue_tails(t: PathTable, n: int) -> dict:
    """VaR / ES with SEs of the loss distributions (None below ``MIN_TAIL_PATHS`` paths beyond the VaR),
    the paths beyond each VaR, and the quantiles of the summary (exact, streamed)."""
    s = {}
    tails = var_es_table(t, TAILS, LEVELS, n)
    for name in TAILS:
        for a in LEVELS:
            v, e, vse, ese, beyond = tails[name, a]
            k = level_key(a)
            s[f"{name}_var_{k}"], s[f"{name}_es_{k}"] = v, e
            s[f"{name}_var_{k}_se"], s[f"{name}_es_{k}_se"] = _or_none(vse), _or_none(ese)
            s[beyond_key(name, a)] = beyond
    notional, adl = per_path("path_liq_notional"), per_path("path_adl")
    wanted = {f"liquidated_notional_p{level_key(q)}": Quantile(notional, q) for q in (0.5, 0.9, 0.99, 0.999)}
    wanted["adl_p99"] = Quantile(adl, 0.99)
    s.update(quantiles(t, wanted, n))
    return s


def _or_none(x: float) -> float | None:
    """An SE for the summary: None (null in summary.json) where it is not estimated (NaN)."""
    return None if math.isnan(x) else x


def summarize(out, model, labels, cfg, paths_table: bool = True) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """(venue summary dict, per-unit DataFrame, per-path DataFrame or None without ``paths_table``).

    ``out``: an ``Outcome`` or a ``store.StoredOutcome``; the per-path statistics stream over its
    chunks (``PathTable``: memory bounded by a chunk, the same quantiles in both)."""
    n = out.n_paths
    t = PathTable(out)
    step_s = model.grid.step_seconds
    s = {"paths": n, "steps": out.n_steps, "seed": cfg["seed"], "step_seconds": step_s,
         "horizon_seconds": model.grid.horizon_seconds, "units": model.n_units, "dtype": cfg["dtype"],
         "se_min_tail_paths": MIN_TAIL_PATHS}
    mom = moments(t, MEANS)
    m = {k: v[1] for k, v in mom.items()}
    s["p_any_liquidation"] = float(m["p_any_liquidation"])
    s["p_any_liquidation_se"] = proportion_se(s["p_any_liquidation"], n)
    s["expected_liquidations"] = float(m["expected_liquidations"])
    s["bad_debt_mean"] = float(m["bad_debt_mean"])
    s["bad_debt_mean_se"] = mean_se(float(mom["bad_debt_mean"][2]), n, round(float(m["p_bad_debt"]) * n))
    for k in ("p_bad_debt", "trader_loss_mean", "fees_mean", "funding_paid_mean"):
        s[k] = float(m[k])
    tails = _venue_tails(t, n)
    s.update({k: v for k, v in tails.items() if k != "adl_p99"})
    for k in ("liquidated_notional_mean", "liquidation_events_mean", "slippage_mean"):
        s[k] = float(m[k])
    fund = float(cfg["insurance_fund"])
    s["insurance_fund"] = fund
    short = m["p_insurance_fund_depleted"]  # the fund could not pay some bad debt
    s["p_insurance_fund_depleted"] = float(short)
    s["p_insurance_fund_depleted_se"] = proportion_se(float(short), n)
    s["p_adl"], s["adl_mean"], s["adl_p99"] = float(m["p_adl"]), float(m["adl_mean"]), tails["adl_p99"]
    for k in ("uncovered_bad_debt_mean", "backstop_pnl_mean", "p_backstop_loss", "circuit_breaker_fires_mean",
              "throttled_steps_mean", "over_liquidated_notional_mean", "excess_liquidation_cost_mean"):
        s[k] = float(m[k])
    fired = cfg.get("guardrails_fired", {})
    s["guardrail_initial_margin_cuts"] = len(fired.get("initial_margin_cuts", {}))
    s["guardrail_open_interest_cuts"] = len(fired.get("open_interest_cuts", {}))
    events = out.liq_events_sum.sum()
    s["mark_lag_artefact_share"] = float(out.artefacts_sum.sum() / events) if events else 0.0
    s["p_uncovered_bad_debt"] = float(m["p_uncovered_bad_debt"])
    s["stress_time_share"] = float(m["stress_time_share"] / out.n_steps)
    if out.cascade_on:
        s.update(cascade_summary(out, cfg["asset_names"]))
    accounts = account_table(out, model, labels, cfg)
    paths = path_table(out, cfg["asset_names"]) if paths_table else None  # engine.outputs: the public names
    return s, accounts, paths


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else (1.0 if a == 0 else math.inf)


def _asset_drawdown(i):
    return lambda x: drawdown_fraction(x)[:, i]


def _worst_drawdown(x):  # each path's largest drawdown over the assets
    return drawdown_fraction(x).max(axis=1)


def cascade_summary(out, names) -> dict:
    """Cascade metrics (DOMAIN.md section 6): amplification of the price drawdown by forced
    flow (with feedback / without, on the same random paths), chained liquidation rounds,
    episode sizes and their distribution. Streamed over the chunks as ``summarize``."""
    t, n = PathTable(out), out.n_paths
    cols = {}
    for i, name in enumerate(names):
        cols[f"dd_{name}"] = per_path("path_drawdown", fn=_asset_drawdown(i))
        cols[f"dd0_{name}"] = per_path("path_drawdown_exog", fn=_asset_drawdown(i))
    cols["worst"], cols["worst0"] = per_path("path_drawdown", fn=_worst_drawdown), \
        per_path("path_drawdown_exog", fn=_worst_drawdown)
    rounds, size = per_path("path_cascade_rounds"), per_path("path_cascade_max_notional")
    m = {k: v[1] for k, v in moments(t, {**cols, "rounds": rounds,
                                         "episodes": per_path("path_cascade_episodes")}).items()}
    q = quantiles(t, {**{k: Quantile(c, 0.99) for k, c in cols.items()}, "rounds_p99": Quantile(rounds, 0.99),
                      "rounds_max": Quantile(rounds, 1.0, "inverted_cdf"), "size_p50": Quantile(size, 0.5),
                      "size_p99": Quantile(size, 0.99)}, n)
    s = {}
    for name in names:
        s[f"drawdown_mean_{name}"] = float(m[f"dd_{name}"])
        s[f"drawdown_no_feedback_mean_{name}"] = float(m[f"dd0_{name}"])
        s[f"cascade_amplification_{name}"] = _ratio(m[f"dd_{name}"], m[f"dd0_{name}"])
        s[f"cascade_amplification_p99_{name}"] = _ratio(q[f"dd_{name}"], q[f"dd0_{name}"])
    s["cascade_amplification"] = _ratio(m["worst"], m["worst0"])
    s["cascade_amplification_p99"] = _ratio(q["worst"], q["worst0"])
    s["cascade_rounds_mean"] = float(m["rounds"])
    s["cascade_rounds_p99"] = q["rounds_p99"]
    s["cascade_rounds_max"] = q["rounds_max"]
    s["cascade_episodes_mean"] = float(m["episodes"])
    s["cascade_size_p50"] = q["size_p50"]
    s["cascade_size_p99"] = q["size_p99"]
    edges = (0.0, *CASCADE_EDGES, math.inf)
    s["cascade_size_distribution"] = [
        {"notional_from": edges[k], "notional_to": edges[k + 1] if k + 1 < len(edges) - 1 else None,
         "episodes": int(c)}
        for k, c in enumerate(out.cascade_hist) if c > 0]
    return s
