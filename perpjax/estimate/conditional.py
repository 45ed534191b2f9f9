"""What ``perpjax fit`` adds to ``market_config``'s config: a conditional, FHS-ready market
(``conditional_config``), a book rebased to the fitted prices (``rebase_book``) and check intervals that
hold at any step (``free_step_intervals``). Each takes and returns a config dict; none is applied by
``market_config`` itself, whose output stays what it was.
"""

from __future__ import annotations

import copy

import numpy as np


def conditional_config(cfg: dict, state: dict, residuals_file: str, bar_seconds: float, *,
                       drop_jumps: bool = True, block_bars: int = 1) -> dict:
    """``cfg`` made conditional on the state at the fit's origin, with historical (FHS) innovations.

    Sets ``market_state`` = ``state`` (``state.market_state``'s dict) and ``innovations`` =
    ``{kind: historical, residuals: residuals_file, bar_seconds}`` (the file's path relative to the
    config's directory; ``residuals.write_residuals``). With ``drop_jumps`` the ``jumps`` section is
    removed: the residuals keep the jump bars, so simulating jumps as well would count them twice (a
    config with both is refused). ``block_bars`` > 1 sets ``innovations.block_bars`` (a moving-block
    bootstrap of that many consecutive residual rows); 1 leaves the key out (i.i.d. rows).

    Returns:
        A new dict (``cfg`` is not modified).
    """
    out = copy.deepcopy(cfg)
    out["market_state"] = copy.deepcopy(state)
    out["innovations"] = {"kind": "historical", "residuals": str(residuals_file), "bar_seconds": float(bar_seconds)}
    if int(block_bars) != 1:
        out["innovations"]["block_bars"] = int(block_bars)
    if drop_jumps:
        out.pop("jumps", None)
    return out


def rebase_book(cfg: dict, base_prices: dict) -> tuple[dict, dict]:
    """The book's listed accounts moved to the config's asset prices, leverage kept.

    Each position's ``entry`` is scaled by ``ratio = price / base_prices[asset]`` (size kept), so a
    position opened at the base config's prices sits at the same distance from the fitted price. An
    isolated position's ``margin`` is scaled by its ratio; a cross account's ``collateral`` by
    ``sum |size| entry_new / sum |size| entry_old`` over its positions, so every unit's leverage
    (notional at entry / collateral) is unchanged (to the 10 significant digits written). ``book.csv``
    and ``book.generate`` are left alone (a generated book is drawn at the config's prices already),
    as are ``insurance_fund`` and notional limits.

    Args:
        cfg: a config dict (``market_config``'s).
        base_prices: asset name -> the price the book was written for (the base config's ``price``).

    Returns:
        (new config, ratios): the ratio per asset applied.
    """
    out = copy.deepcopy(cfg)
    prices = {a["name"]: float(a["price"]) for a in out.get("assets") or []}
    ratio = {n: prices[n] / float(base_prices[n]) for n in prices if base_prices.get(n)}
    book = out.get("book") or {}
    for acc in book.get("accounts") or []:
        old = new = 0.0
        for pos in acc.get("positions") or []:
            q = ratio.get(pos.get("asset"))
            if q is None:
                continue
            notional = abs(float(pos["size"])) * float(pos["entry"])
            old, new = old + notional, new + notional * q
            pos["entry"] = _sig(float(pos["entry"]) * q)
            if pos.get("margin") is not None:
                pos["margin"] = _sig(float(pos["margin"]) * q)
        if acc.get("collateral") is not None and old > 0:
            acc["collateral"] = _sig(float(acc["collateral"]) * new / old)
    return out, ratio


def free_step_intervals(cfg: dict, step_seconds: float | None = None) -> tuple[dict, list]:
    """``oracle.update_every_seconds`` and ``liquidation.check_every_seconds`` dropped where they equal
    the step, so the config runs at any ``time.step_seconds`` (unset, both mean every step).

    A value that equals the step means "every step"; kept, it fails at a longer step (the engine asks
    for a positive multiple of the step). A value that is a real multiple (e.g. 300 s at 60 s steps) is
    kept as the user's choice.

    Returns:
        (new config, the dotted keys removed).
    """
    out = copy.deepcopy(cfg)
    step = float(step_seconds if step_seconds is not None else out["time"]["step_seconds"])
    removed = []
    for section, key in (("oracle", "update_every_seconds"), ("liquidation", "check_every_seconds")):
        sec = out.get(section)
        if isinstance(sec, dict) and sec.get(key) is not None and np.isclose(float(sec[key]), step, rtol=1e-12):
            del sec[key]
            removed.append(f"{section}.{key}")
    return out, removed


def _sig(x: float, digits: int = 10) -> float:
    return float(f"{x:.{digits}g}")
