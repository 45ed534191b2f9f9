"""GARCH-standardised residuals of a market fit, the sample that filtered historical simulation bootstraps.

Filtered historical simulation (Barone-Adesi, Giannopoulos & Vosper 1999, "VaR without correlations
for portfolios of derivative securities", J. Futures Markets 19(5); used for CCP initial margin):
fit a GARCH per asset, standardise each return by its conditional volatility,
``z_t = x_t / sqrt(h_t)``, and simulate by drawing whole cross-asset rows ``z_t`` (so skew, tail shape
and tail dependence are the data's) rescaled by the simulated ``sqrt(h)``. Here ``x_t = r_t - mean`` of
the non-jump returns and ``h_t`` the conditional variance of the fit (``MarketFit.residuals``); jump
bars are kept, as they are part of the empirical distribution. Rows are whole cross-asset vectors of
the fit's common window: a bar missing for any asset was never in it (``returns_frame``).

The file (``write_residuals``, ``numpy.savez`` written atomically): ``residuals`` float64 (n, assets),
columns in the config's asset order; ``assets`` (assets,) the config names; ``symbols`` the data's
symbols; ``bar_seconds``; ``start``, ``end`` unix seconds, the fit window ``[first bar, last bar + bar)``
(``end`` is the origin of the fit's ``market_state``); ``times`` (n,) the timestamp of each row; ``jumps``
(n, assets) bool, the bars the fit flagged as jumps (its GARCH entered them as an average shock, and so
does the simulation's: ``innovations.garch_feed``). At most
``max_rows`` rows, the most recent (``truncated`` says whether rows were dropped).
"""

from __future__ import annotations

import os

import numpy as np

from .market import MarketFit

MAX_RESIDUAL_ROWS = 50_000


def standardized_residuals(fit: MarketFit, max_rows: int | None = MAX_RESIDUAL_ROWS):
    """The fit's standardised residuals as whole cross-asset rows.

    Args:
        fit: ``fit_market``'s result.
        max_rows: keep the most recent rows only (None = all).

    Returns:
        (z, times, jumps): (n, k) float64 ``z_t = x_t / sqrt(h_t)`` in ``fit.symbols`` order, (n,) int64
        timestamps, (n, k) bool the fit's jump bars (None when the fit carries no mask).
    """
    if fit.residuals is None or fit.residual_times is None:
        raise ValueError("fit: carries no residuals (a MarketFit built by hand? refit with fit_market)")
    z = np.asarray(fit.residuals, np.float64)
    t = np.asarray(fit.residual_times, np.int64)
    j = None if fit.residual_jumps is None else np.asarray(fit.residual_jumps, bool)
    keep = np.isfinite(z).all(axis=1)
    z, t = z[keep], t[keep]
    j = None if j is None else j[keep]
    if max_rows is not None:
        if max_rows < 1:
            raise ValueError(f"max_rows: must be >= 1 (got {max_rows})")
        z, t = z[-max_rows:], t[-max_rows:]
        j = None if j is None else j[-max_rows:]
    return z, t, j


def write_residuals(path, fit: MarketFit, names, *, max_rows: int | None = MAX_RESIDUAL_ROWS) -> dict:
    """Write the fit's standardised residuals for ``innovations: {kind: historical}`` (module docstring).

    Args:
        path: the ``.npz`` file to write (atomically).
        fit: ``fit_market``'s result.
        names: config asset names, one per ``fit.symbols`` (same order).
        max_rows: most recent rows kept.

    Returns:
        dict: ``rows`` written, ``truncated`` (bool), ``start``, ``end`` of the fit window, ``scale`` (k,) the
        rows' std per asset (the factor FHS returns carry over ``assets.vol``: ``innovations``).
    """
    from ..io import atomic_write_npz

    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if len(names) != len(fit.symbols):
        raise ValueError(f"names: {len(names)} names for {len(fit.symbols)} fitted symbols {list(fit.symbols)}")
    z, t, jumps = standardized_residuals(fit, max_rows)
    full = int(np.isfinite(np.asarray(fit.residuals)).all(axis=1).sum())
    start, end = int(fit.start), int(fit.end + fit.bar_seconds)
    extra = {} if jumps is None else {"jumps": jumps}
    atomic_write_npz(os.fspath(path), residuals=z, assets=np.array(names, dtype=str),
                     symbols=np.array(fit.symbols, dtype=str), bar_seconds=np.float64(fit.bar_seconds),
                     start=np.int64(start), end=np.int64(end), times=t, **extra)
    return {"rows": len(z), "truncated": len(z) < full, "start": start, "end": end, "scale": z.std(axis=0)}


def read_residuals(path) -> dict:
    """A residual file as a dict: ``residuals`` (n, k), ``assets`` and ``symbols`` (lists of str),
    ``bar_seconds`` (float), ``start``, ``end`` (int), ``times`` (n,) (None if absent).

    Raises:
        ValueError: the file is missing or lacks a required array (naming the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such residual file")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a residual file ({e})") from None
    need = ("residuals", "assets", "bar_seconds", "start", "end")
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}")
    z = np.asarray(data["residuals"], np.float64)
    assets = [str(a) for a in data["assets"]]
    if z.ndim != 2 or z.shape[1] != len(assets):
        raise ValueError(f"{path}: residuals of shape {z.shape} for {len(assets)} assets")
    return {"residuals": z, "assets": assets,
            "symbols": [str(s) for s in data["symbols"]] if "symbols" in data else None,
            "bar_seconds": float(data["bar_seconds"]), "start": int(data["start"]), "end": int(data["end"]),
            "times": data.get("times")}
