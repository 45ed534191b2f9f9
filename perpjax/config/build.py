"""A resolved config -> the validated models (``build_model``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..engine import RiskModel
from ..engine.driver import local_devices
from ..errors import ConfigError
from ..guardrails import CircuitBreaker, enforce_initial_margin, enforce_open_interest
from ..innovations import block_starts, load_residuals
from ..liquidation import DepthModel, Liquidation
from ..margin import Book, BookLabels, Ladder, generate_book
from ..market import Basis, Funding, MarkPrice, Oracle
from ..paths import PriceModel, TimeGrid
from .book import book_from_accounts, listed_accounts
from .convert import num_list, steps_of, wrapped
from .events import build_stress
from .ladders import check_generated
from .load import resolve_calibration, resolve_with_caps


def build_model(cfg: dict):
    """Resolve a config dict and build (RiskModel, BookLabels, resolved config)."""
    c, caps = resolve_with_caps(cfg)
    try:
        local_devices(c["devices"])  # more devices than the process has: refused before any compute
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if c["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if c["dtype"] == "float64" else jnp.float32
    def arr(a):
        return jnp.asarray(np.asarray(a, np.float64), dtype)
    assets = c["assets"]
    names = [a["name"] for a in assets]
    n = len(names)
    grid = wrapped("time", TimeGrid, float(c["time"]["step_seconds"]), float(c["time"]["horizon_seconds"]))
    corr = num_list(c["correlation"], "correlation")
    if corr.shape != (n, n):
        raise ConfigError(f"correlation: must be {n}x{n} for {n} assets (got shape {corr.shape})")
    j = c["jumps"] or {}
    inn = c["innovations"]
    if j and inn["kind"] == "historical" and np.any(num_list(j["intensity_per_year"], "jumps.intensity_per_year",
                                                              n) > 0):
        raise ConfigError("jumps: not with innovations.kind 'historical': the residual sample keeps the fit window's "
                          "jump bars, so simulated jumps would count them twice (drop the jumps section; "
                          "`perpjax fit --conditional` writes none)")
    residuals, bar_steps, starts, scale, feed = innovation_inputs(inn, grid, names)
    prices = wrapped(
        "assets/correlation/innovations/jumps", PriceModel.build,
        [a["price"] for a in assets], np.array([a["vol"] for a in assets], np.float64) * scale,
        [a["drift"] for a in assets], corr,
        innovations=inn["kind"], nu=float(inn["nu"]), residuals=residuals, bar_steps=bar_steps,
        block_bars=int(inn["block_bars"]), block_starts=starts, residual_feed=feed,
        jump_intensity=num_list(j["intensity_per_year"], "jumps.intensity_per_year", n) if j else None,
        jump_mean=num_list(j["mean"], "jumps.mean", n) if j else None,
        jump_std=num_list(j["std"], "jumps.std", n) if j else None, dt_years=grid.dt_years, dtype=dtype)
    o = c["oracle"]
    oracle = wrapped("oracle", Oracle, 1 if o["update_every_seconds"] is None else
                     steps_of(grid, o["update_every_seconds"], "oracle.update_every_seconds"))
    bs = c["basis"]
    basis = wrapped("basis", Basis, arr([a["basis_mean"] for a in assets]), arr(np.full(n, bs["stationary_std"])),
                    arr(np.full(n, bs["half_life_seconds"])),
                    crowding=arr(num_list(bs["crowding"], "basis.crowding", n)))
    mk = c["mark"]
    mark = wrapped("mark", MarkPrice, arr(mk["window_seconds"]), mk["kind"])
    f = c["funding"]
    funding = wrapped("funding", Funding, arr(f["interest"]), arr(f["clamp"]), arr(f["cap"]),
                      steps_of(grid, f["interval_seconds"], "funding.interval_seconds") if f["enabled"] else 1,
                      scale=float(f["scale"]), quantum=float(f["quantum"]), rounding=f["rounding"], price=f["price"],
                      weighting=f["weighting"], enabled=f["enabled"])
    tiers = []
    for name in names:
        t = c["ladders"][name]
        tiers.append(([x["floor"] for x in t], [x["mmr"] for x in t], [x["imr"] for x in t]))
    ladder = wrapped("ladders", Ladder.build, tiers, dtype=dtype, names=names)
    lq = c["liquidation"]
    check_every = 1 if lq["check_every_seconds"] is None else steps_of(
        grid, lq["check_every_seconds"], "liquidation.check_every_seconds")
    depth = wrapped("liquidation", DepthModel, arr([a["depth_usd"] for a in assets]),
                    arr([a["spread"] for a in assets]), float(lq["depth_distance"]), float(lq["impact_exponent"]),
                    forced_cost=arr(lq["forced_cost"]), vol_elasticity=float(lq["depth_vol_elasticity"]),
                    depth_floor=float(lq["depth_floor"]),
                    vol_halflife_steps=max(1, round(lq["depth_vol_halflife_seconds"] / grid.step_seconds)))
    cooldown = 0
    if lq["cooldown_seconds"]:
        if lq["mode"] != "fraction":
            raise ConfigError("liquidation.cooldown_seconds: applies to mode 'fraction' only")
        cooldown = steps_of(grid, lq["cooldown_seconds"], "liquidation.cooldown_seconds")
    liquidation = wrapped("liquidation", Liquidation, depth, arr(lq["fee_rate"]), buffer=arr(lq["buffer"]),
                          fraction=arr(lq["fraction"]), fraction_above=arr(lq["fraction_above_notional"]),
                          backstop_ratio=arr(lq["backstop_fraction_of_mm"]),
                          throttle=arr(lq["throttle_notional_per_step"]), check_every=check_every, bridge=lq["bridge"],
                          mode=lq["mode"], cooldown=cooldown,
                          delay=steps_of(grid, lq["delay_seconds"], "liquidation.delay_seconds") if lq["delay_seconds"]
                          else 0, adl=lq["adl"], fairness=lq["fairness"], ledger=lq["ledger"])
    breaker = None
    cb = c["guardrails"]["circuit_breaker"]
    if cb is not None:
        breaker = wrapped("guardrails.circuit_breaker", CircuitBreaker, arr(cb["move"]),
                          steps_of(grid, cb["window_seconds"], "guardrails.circuit_breaker.window_seconds"),
                          steps_of(grid, cb["halt_seconds"], "guardrails.circuit_breaker.halt_seconds"))
    b = c["book"]
    coll, size, entry, labels = book_from_accounts(listed_accounts(c), names, n)
    if b["generate"] is not None:
        g = dict(b["generate"])
        gb, gl = wrapped("book.generate", generate_book, g.pop("n_accounts"), [a["price"] for a in assets], ladder,
                         seed=g.pop("seed"), dtype=dtype, **g)
        check_generated(c, caps, gb, gl)  # the ladders' caps, as for the listed accounts (before any compute)
        coll += list(np.asarray(gb.collateral))
        size += list(np.asarray(gb.size))
        entry += list(np.asarray(gb.entry))
        labels = BookLabels(labels.account + gl.account, labels.mode + gl.mode, labels.unit + gl.unit)
    if not coll:
        raise ConfigError("book: no accounts (give book.accounts, book.accounts_file or book.generate)")
    size = np.asarray(size, np.float64)
    fired = {}
    gr = c["guardrails"]
    if gr["enforce_initial_margin"]:
        size, cuts = enforce_initial_margin(coll, size, entry, ladder)
        fired["initial_margin_cuts"] = {labels.unit[u]: k for u, k in cuts.items()}
    if gr["open_interest_limit"] is not None:
        limits = {}
        for k, v in gr["open_interest_limit"].items():
            if k not in names:
                raise ConfigError(f"guardrails.open_interest_limit.{k}: not an asset (assets: {', '.join(names)})")
            limits[names.index(k)] = float(v)
        size, cuts = enforce_open_interest(size, np.asarray(entry, np.float64), limits)
        fired["open_interest_cuts"] = {f"{names[a]}:{side}": k for (a, side), k in cuts.items()}
    c["guardrails_fired"] = fired
    book = wrapped("book", Book, arr(coll), arr(size), arr(np.asarray(entry)))
    stress = build_stress(c, grid, prices, names, arr)
    model = wrapped("model", RiskModel, grid, prices, oracle, basis, mark, funding, ladder, book, liquidation,
                    arr(c["insurance_fund"]), breaker, **stress)
    c["asset_names"] = names
    if c["calibration"] is not None:
        c["calibration"] = resolve_calibration(c)  # unknown keys fail here too, not only in `calibrate`
    return model, labels, c



def innovation_inputs(inn: dict, grid, names) -> tuple:
    """(standardised residual sample or None, steps per bar, the block starts or None:
    ``innovations.block_starts``, the return scale per asset: the sample's own std, 1.0 without one;
    ``innovations`` module docstring, the rows' GARCH feed or None: ``innovations.garch_feed``) of the
    ``innovations`` section.

    ``bar_seconds`` B (default: the step) must be a whole multiple m of the step: the innovation is
    drawn per bar and bridged inside it (``paths.bar_step``). Historical innovations need
    ``residuals`` (a file from ``perpjax filter``/``fit``; ``innovations.load_residuals``), fitted at B."""
    bar = grid.step_seconds if inn["bar_seconds"] is None else float(inn["bar_seconds"])
    m = bar / grid.step_seconds
    if m < 1 - 1e-9 or abs(m - round(m)) > 1e-9:
        raise ConfigError(f"innovations.bar_seconds: must be a whole multiple of time.step_seconds "
                          f"({grid.step_seconds:g} s), got {bar:g}")
    if inn["kind"] != "historical":
        for key, unset in (("residuals", inn["residuals"] is None), ("block_bars", inn["block_bars"] == 1)):
            if not unset:
                raise ConfigError(f"innovations.{key}: only with kind 'historical' (kind is {inn['kind']!r})")
        return None, int(round(m)), None, 1.0, None
    if inn["residuals"] is None:
        raise ConfigError("innovations.residuals: required with kind 'historical' (an npz of standardised residuals)")
    try:
        sample, fitted, times, scale, feed = load_residuals(inn["residuals"], names)
    except ValueError as e:
        raise ConfigError(f"innovations.residuals: {e}") from None
    if abs(fitted - bar) > 1e-6 * bar:
        raise ConfigError(f"innovations.bar_seconds: the residuals were fitted on {fitted:g} s bars; the innovations "
                          f"apply per {bar:g} s ({'the step' if inn['bar_seconds'] is None else 'bar_seconds'}): "
                          f"set innovations.bar_seconds: {fitted:g}")
    if inn["block_bars"] > len(sample):
        raise ConfigError(f"innovations.block_bars: {inn['block_bars']} bars per block, more than the "
                          f"{len(sample)} residual rows")
    try:
        starts = block_starts(times, fitted, int(inn["block_bars"]))
    except ValueError as e:
        raise ConfigError(f"innovations.{e}") from None
    return sample, int(round(m)), starts, scale, feed
