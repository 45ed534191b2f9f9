"""The book at t = 0: every margin unit must start at or above its maintenance margin.

A unit that starts below maintenance (or insolvent) is liquidated at the first check whatever the
market does, which inflates every liquidation and bad-debt number: it is an input error unless the
config says ``book.start_below_maintenance: true`` (stress tests), in which case it is a warning.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def initial_margin_table(model, labels):
    """(unit labels, equity (units,), maintenance margin (units,)) at t = 0, at the initial mark (USD)."""
    import jax.numpy as jnp

    from .engine import margin, positions

    P = positions(model)
    _, mark0 = model.mark.init(model.prices.s0, model.basis.mean.astype(model.dtype))
    equity, mm, _ = margin(model, P, P.size, mark0, model.book.collateral)
    open_ = np.asarray(jnp.any(model.book.size != 0, axis=-1))
    return list(labels.unit), np.asarray(equity, np.float64), np.asarray(mm, np.float64), open_


def below_maintenance(model, labels) -> list[tuple[str, float, float]]:
    """(unit, equity, MM) of every open unit with equity < MM at t = 0 (insolvent ones included)."""
    units, eq, mm, open_ = initial_margin_table(model, labels)
    return [(u, float(e), float(m)) for u, e, m, o in zip(units, eq, mm, open_, strict=True) if o and e < m]


def _fmt(u, e, m):
    state = "insolvent, " if e < 0 else ""
    return f"{u} ({state}equity {e:,.2f} USD < maintenance margin {m:,.2f} USD)"


def listing(bad) -> str:
    """``below_maintenance``'s units as a message names them: the first five, then how many more."""
    return "; ".join(_fmt(*b) for b in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")


def check_solvency(model, labels, cfg: dict, warn=None) -> list[tuple[str, float, float]]:
    """Raise a ``ConfigError`` naming the first units below maintenance at t = 0, unless
    ``book.start_below_maintenance`` is true; then call ``warn(message)`` and return them."""
    bad = below_maintenance(model, labels)
    if not bad:
        return bad
    shown = listing(bad)
    allowed = bool((cfg.get("book") or {}).get("start_below_maintenance", False))
    if not allowed:
        raise ConfigError(f"book: {len(bad)} margin unit(s) start below maintenance margin: {shown} "
                          "(set book.start_below_maintenance=true to allow it for a stress test)")
    if warn is not None:
        warn(f"warning: book.start_below_maintenance: {len(bad)} margin unit(s) start below maintenance "
             f"margin and are liquidated at the first check: {shown}")
    return bad
