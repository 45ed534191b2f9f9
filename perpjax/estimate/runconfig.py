"""The runnable config a market fit writes: ``market_config`` puts a ``MarketFit`` into a full perpjax
config (what ``perpjax fit`` saves).

* **Config** (``market_config``): a full perpjax config dict with the fitted market (assets, calm
  correlation, Student-t innovations, jumps, GARCH at ``fitted_seconds`` = the bar, the ``shock``
  regime with the fit's drawdown, half-life, stress correlation and vol multiplier), the rest
  (book depth and spread, ladders, book, venue rules) from a base config.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .market import MarketFit
from .regimes import nearest_psd_correlation

DEFAULT_REGIME_DRAWDOWN = 0.05
DEFAULT_REGIME_HALFLIFE_SECONDS = 21600.0
ASSET_KEYS_FROM_BASE = ("depth_usd", "spread", "basis_mean")


def _floats(a, ndigits: int | None = None) -> list:
    """Nested Python floats (no numpy scalars) from an array, optionally rounded."""
    a = np.asarray(a, np.float64)
    if ndigits is not None:
        a = np.round(a, ndigits)
    return [float(v) for v in a] if a.ndim == 1 else [_floats(row) for row in a]


def rounded_correlation(c, ndigits: int = 4) -> np.ndarray:
    """``c`` projected (``nearest_psd_correlation``) and rounded to ``ndigits`` decimals, still a valid
    correlation matrix (unit diagonal, smallest eigenvalue > 0 after rounding).

    Rounding moves each entry by at most ``0.5 * 10^-ndigits``, so the eigenvalues by at most
    ``k`` times that; the projection's eigenvalue floor is raised until the rounded matrix is
    positive definite.
    """
    c = np.asarray(c, np.float64)
    k = len(c)
    step = 0.5 * 10.0**-ndigits
    for floor in (1e-8, *(step * k * m for m in (1, 2, 4, 8, 16))):
        out = np.round(nearest_psd_correlation(c, floor), ndigits)
        np.fill_diagonal(out, 1.0)
        if np.linalg.eigvalsh(out).min() > 0:
            return out
    raise ValueError("correlation: no positive definite matrix after rounding")  # pragma: no cover


def _fitted_assets(fit: MarketFit, names: list, base_assets: dict) -> list:
    """``market_config``'s ``assets``: name, last price, fitted vol, drift 0, and the base asset's
    ``ASSET_KEYS_FROM_BASE``."""
    assets = []
    for i, name in enumerate(names):
        a = {"name": str(name), "price": float(fit.last_price[i]), "vol": float(fit.vol[i]), "drift": 0.0}
        for key in ASSET_KEYS_FROM_BASE:
            if key in base_assets[name]:
                a[key] = copy.deepcopy(base_assets[name][key])
        assets.append(a)
    return assets


def market_config(fit: MarketFit, names: Sequence[str], base: dict) -> dict:
    """A perpjax config dict simulating the fitted market: ``base`` with its market replaced.

    ``base`` is a full config dict (e.g. ``perpjax.config.load_config()``, the packaged default)
    and is not modified; the result is a deep copy of it with these keys replaced:

    * ``assets``: one per fitted symbol, in order, named ``names[i]``: ``price`` = last close, the
      fitted ``vol``, ``drift`` 0, and ``depth_usd``, ``spread`` (and ``basis_mean``) copied from
      the base asset of that name (book depth is not estimated from prices);
    * ``correlation``: the calm matrix, rounded to 4 decimals (``rounded_correlation``);
    * ``innovations``: Student t with ``nu`` rounded to 2 decimals;
    * ``jumps``: per-asset ``intensity_per_year``, ``mean``, ``std``;
    * ``garch``: per-asset ``alpha``, ``beta`` with ``fitted_seconds`` = the bar length (the
      engine maps them to its step; simulate at the data's bar for them to hold exactly);
    * ``regimes``: the stress correlation (rounded as above), ``switch: shock`` and the regime's
      ``vol_multiplier``. With the ``"drawdown"`` stress the ``drawdown`` and
      ``reference_halflife_seconds`` (``stress_halflife_bars * bar_seconds``) are the ones the fit
      used, so the simulated regime is the state the correlations were measured in. With the
      ``"quantile"`` stress (a selection on the bar's own return, which no simulator state
      reproduces) the switch is still ``shock``, with the simulator's defaults ``drawdown`` 0.05 and
      ``reference_halflife_seconds`` 21600, and ``vol_multiplier`` 1 (not estimated). ``depth_factor``
      is left out (default 1: not estimated);
    * ``ladders``: the base ladders of ``names`` (others dropped, as the config allows no ladder
      for an absent asset);
    * ``description``: ``"market fitted to SYMBOLS from START to END (UTC) by perpjax fit"``.

    Everything else (book, venue rules, time grid, ...) is the base's: a book whose positions refer
    to assets not in ``names`` fails in ``build_model``. All numbers are Python floats, so the
    dict dumps to YAML with ``yaml.safe_dump``.

    Args:
        fit: ``fit_market``'s result.
        names: asset names for the fitted symbols (e.g. ``BTC`` for ``BTCUSDT``), same order.
        base: full config dict supplying the non-market sections, asset depth/spread and ladders.

    Raises:
        ValueError: ``names`` has the wrong length or repeats a name, or the base lacks an asset
            or a ladder of one of ``names``.
    """
    names = [names] if isinstance(names, str) else list(names)
    k = len(fit.symbols)
    if len(names) != k:
        raise ValueError(f"names: {len(names)} names for {k} fitted symbols {list(fit.symbols)}")
    if len(set(names)) != k:
        raise ValueError(f"names: repeated in {names}")
    if not isinstance(base, dict):
        raise ValueError(f"base: need a config dict (got {type(base).__name__})")
    cfg = copy.deepcopy(base)
    base_assets = {a.get("name"): a for a in (cfg.get("assets") or []) if isinstance(a, dict)}
    ladders = cfg.get("ladders") or {}
    for name in names:
        if name not in base_assets:
            raise ValueError(f"names: {name!r} is not an asset of the base config (has {sorted(base_assets)}); "
                             "its depth_usd and spread are not estimated from prices")
        if name not in ladders:
            raise ValueError(f"names: the base config has no ladder for {name!r} (ladders.{name})")
    assets = _fitted_assets(fit, names, base_assets)
    if fit.stress == "drawdown":
        drawdown = float(fit.stress_drawdown)
        halflife = float(fit.stress_halflife_bars * fit.bar_seconds)
    else:
        drawdown, halflife = DEFAULT_REGIME_DRAWDOWN, DEFAULT_REGIME_HALFLIFE_SECONDS
    day = "%Y-%m-%d %H:%M"
    span = (f"{pd.Timestamp(fit.start, unit='s').strftime(day)} to "
            f"{pd.Timestamp(fit.end, unit='s').strftime(day)}")
    cfg.update(
        assets=assets,
        correlation=_floats(rounded_correlation(fit.calm_correlation)),
        innovations={"kind": "student_t", "nu": round(float(fit.nu), 2)},
        jumps={"intensity_per_year": _floats(fit.jump_intensity), "mean": _floats(fit.jump_mean),
               "std": _floats(fit.jump_std)},
        garch={"alpha": _floats(fit.garch_alpha), "beta": _floats(fit.garch_beta),
               "fitted_seconds": float(fit.bar_seconds)},
        regimes={"stress_correlation": _floats(rounded_correlation(fit.stress_correlation)), "switch": "shock",
                 "drawdown": drawdown, "reference_halflife_seconds": halflife,
                 "vol_multiplier": _floats(fit.stress_vol_multiplier)},
        ladders={name: copy.deepcopy(ladders[name]) for name in names},
        description=f"market fitted to {', '.join(fit.symbols)} from {span} (UTC) by perpjax fit",
    )
    return cfg
