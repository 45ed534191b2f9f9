"""Config files (YAML) -> validated models.

The config maps one-to-one onto the Modules (``paths``, ``market``, ``margin``,
``liquidation``). Every key is checked before anything is computed: unknown
keys, wrong types, NaN / infinite numbers and out-of-range values raise
``ConfigError`` naming the field (dotted path) and the rule.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import yaml

from .engine import RiskModel
from .guardrails import CircuitBreaker, enforce_initial_margin, enforce_open_interest
from .liquidation import DepthModel, Liquidation
from .margin import Book, BookLabels, Ladder, generate_book
from .market import Basis, Funding, MarkPrice, Oracle
from .paths import PriceModel, TimeGrid
from . import schema
from .schema import ConfigError as ConfigError
from .venues import preset_ladder


def _num_list(v, path, n=None):
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: must be numbers (got {v!r})") from None
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{path}: must be finite numbers (got {v!r})")
    if n is not None:
        a = np.broadcast_to(a, (n,)) if a.ndim == 0 else a
        if a.shape != (n,):
            raise ConfigError(f"{path}: needs one value per asset ({n}), got {a.shape}")
    return a


def default_config_path() -> Path:
    return Path(str(resources.files("perpjax") / "configs" / "default.yaml"))


def scenarios_dir() -> Path:
    return default_config_path().parent / "scenarios"


def list_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every packaged scenario, sorted by name."""
    out = []
    for p in sorted(scenarios_dir().glob("*.yaml")):
        raw = yaml.safe_load(p.read_text()) or {}
        out.append((p.stem, str(raw.get("description", ""))))
    return out


def apply_scenario(cfg: dict, name: str) -> dict:
    """``cfg`` with the named packaged scenario merged over it (its ``extends`` ignored):
    the scenario's events, regimes, cascade and other keys apply to any config."""
    p = scenarios_dir() / f"{name}.yaml"
    if not p.is_file():
        names = ", ".join(n for n, _ in list_scenarios())
        raise ConfigError(f"--scenario {name}: no such scenario (available: {names})")
    raw = yaml.safe_load(p.read_text())
    raw.pop("extends", None)
    return deep_merge(cfg, raw)


def _parse_value(text):
    return yaml.safe_load(text)


def apply_overrides(cfg: dict, overrides) -> dict:
    """Apply ``a.b.0.c=value`` overrides (value parsed as YAML)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        path, text = item.split("=", 1)
        keys = path.split(".")
        node = cfg
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise ConfigError(f"{'.'.join(keys[:i + 1])}: no such list index")
                k = int(k)
            elif not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(keys[:i + 1])}: cannot set inside a {type(node).__name__}")
            if last:
                node[k] = _parse_value(text)
            else:
                if isinstance(node, dict) and k not in node:
                    node[k] = {}
                node = node[k]
    return cfg


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(p: Path, chain=()) -> dict:
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config: not valid YAML ({p}): {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: top level of {p} must be a mapping")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"extends: must be 'default' or a path to a config (got {base!r}) in {p}")
    bp = default_config_path() if base == "default" else (p.parent / base).resolve()
    if bp in chain or len(chain) > 8:
        raise ConfigError(f"extends: configs extend each other in a cycle ({' -> '.join(map(str, (*chain, bp)))})")
    return deep_merge(_read_yaml(bp, (*chain, p.resolve())), raw)


def load_config(path=None, overrides=()) -> dict:
    """Read a YAML config (the packaged default when ``path`` is None) and apply overrides.

    A config may start with ``extends: default`` (or a path relative to it): it is
    then the base config with this file's keys merged over it (mappings merge key
    by key; lists such as ``book.accounts`` or ``correlation`` replace).
    """
    p = Path(path) if path is not None else default_config_path()
    return apply_overrides(_read_yaml(p), overrides)


def resolve(cfg: dict) -> dict:
    """Check the whole config against the schema (``schema.Config``) and fill defaults (no models built).

    Ladder presets (``"venue:SYMBOL"``) are expanded first; the result is plain data.
    """
    if not isinstance(cfg, dict):
        raise ConfigError("config: top level must be a mapping")
    cfg = dict(cfg)
    if isinstance(cfg.get("ladders"), dict):
        cfg["ladders"] = {name: _preset(name, tiers) for name, tiers in cfg["ladders"].items()}
    c = schema.validate(schema.Config, cfg).model_dump(by_alias=True)
    names = [a["name"] for a in c["assets"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"assets: names must be unique (got {names})")
    for name in names:
        if name not in c["ladders"]:
            raise ConfigError(f"ladders.{name}: required (one ladder per asset)")
    extra = sorted(set(c["ladders"]) - set(names))
    if extra:
        raise ConfigError(f"ladders.{extra[0]}: not an asset (assets: {', '.join(names)})")
    return c


def _preset(name: str, tiers):
    """A ladder given as a venue preset (``"binance_usdm:BTCUSDT"``) -> its tiers."""
    if not isinstance(tiers, str):
        return tiers
    try:
        return preset_ladder(tiers)
    except ValueError as e:
        raise ConfigError(f"ladders.{name}: {e}") from None


def _wrap(path, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def _steps(grid, seconds, path) -> int:
    try:
        return grid.steps_of(seconds, path)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _book_from_accounts(accounts, names, n_assets):
    coll, size, entry, acct, mode, unit = [], [], [], [], [], []

    def add(*row):
        for col, v in zip((coll, size, entry, acct, mode, unit), row, strict=True):
            col.append(v)

    index = {n: i for i, n in enumerate(names)}
    for i, a in enumerate(accounts):
        p = f"book.accounts[{i}]"
        rows = []
        for j, pos in enumerate(a["positions"]):
            if pos["asset"] not in index:
                raise ConfigError(f"{p}.positions[{j}].asset: unknown asset {pos['asset']!r} "
                                  f"(assets: {', '.join(names)})")
            rows.append((index[pos["asset"]], pos))
        if a["mode"] == "cross":
            if a["collateral"] is None:
                raise ConfigError(f"{p}.collateral: required for a cross account")
            s, e = np.zeros(n_assets), np.ones(n_assets)
            for k, pos in rows:
                if s[k] != 0:
                    raise ConfigError(f"{p}.positions: asset {names[k]} listed twice")
                s[k], e[k] = pos["size"], pos["entry"]
            add(a["collateral"], s, e, a["id"], "cross", a["id"])
        else:
            for j, (k, pos) in enumerate(rows):
                if pos["margin"] is None:
                    raise ConfigError(f"{p}.positions[{j}].margin: required for an isolated position")
                s, e = np.zeros(n_assets), np.ones(n_assets)
                s[k], e[k] = pos["size"], pos["entry"]
                add(pos["margin"], s, e, a["id"], "isolated", f"{a['id']}:{names[k]}")
    return coll, size, entry, BookLabels(tuple(acct), tuple(mode), tuple(unit))


def read_book_csv(path, names):
    """CSV with columns account, mode, asset, size, entry, collateral (cross) / margin (isolated).

    One row per position; a cross account repeats its collateral on each row.
    """
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"book.csv: file not found: {path}") from None
    need = {"account", "asset", "size", "entry"}
    if not need <= set(df.columns):
        raise ConfigError(f"book.csv: missing columns {sorted(need - set(df.columns))}")
    accounts = []
    for acc, g in df.groupby("account", sort=False):
        mode = str(g["mode"].iloc[0]) if "mode" in g else "cross"
        a = {"id": str(acc), "mode": mode, "collateral": None, "positions": []}
        if mode == "cross":
            a["collateral"] = float(g["collateral"].iloc[0]) if "collateral" in g else None
        for _, r in g.iterrows():
            a["positions"].append({"asset": str(r["asset"]), "size": float(r["size"]), "entry": float(r["entry"]),
                                   "margin": float(r["margin"]) if "margin" in r and pd.notna(r["margin"]) else None})
        accounts.append(a)
    return accounts


def build_model(cfg: dict):
    """Resolve a config dict and build (RiskModel, BookLabels, resolved config)."""
    c = resolve(cfg)
    if c["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if c["dtype"] == "float64" else jnp.float32
    def arr(a):
        return jnp.asarray(np.asarray(a, np.float64), dtype)
    assets = c["assets"]
    names = [a["name"] for a in assets]
    n = len(names)
    grid = _wrap("time", TimeGrid, float(c["time"]["step_seconds"]), float(c["time"]["horizon_seconds"]))
    corr = _num_list(c["correlation"], "correlation")
    if corr.shape != (n, n):
        raise ConfigError(f"correlation: must be {n}x{n} for {n} assets (got shape {corr.shape})")
    j = c["jumps"] or {}
    inn = c["innovations"]
    prices = _wrap(
        "assets/correlation/innovations/jumps", PriceModel.build,
        [a["price"] for a in assets], [a["vol"] for a in assets], [a["drift"] for a in assets], corr,
        innovations=inn["kind"], nu=float(inn["nu"]),
        jump_intensity=_num_list(j["intensity_per_year"], "jumps.intensity_per_year", n) if j else None,
        jump_mean=_num_list(j["mean"], "jumps.mean", n) if j else None,
        jump_std=_num_list(j["std"], "jumps.std", n) if j else None, dt_years=grid.dt_years, dtype=dtype)
    o = c["oracle"]
    oracle = _wrap("oracle", Oracle, 1 if o["update_every_seconds"] is None else
                   _steps(grid, o["update_every_seconds"], "oracle.update_every_seconds"))
    bs = c["basis"]
    basis = _wrap("basis", Basis, arr([a["basis_mean"] for a in assets]), arr(np.full(n, bs["stationary_std"])),
                  arr(np.full(n, bs["half_life_seconds"])),
                  crowding=arr(_num_list(bs["crowding"], "basis.crowding", n)))
    mk = c["mark"]
    mark = _wrap("mark", MarkPrice, arr(mk["window_seconds"]), mk["kind"])
    f = c["funding"]
    funding = _wrap("funding", Funding, arr(f["interest"]), arr(f["clamp"]), arr(f["cap"]),
                    _steps(grid, f["interval_seconds"], "funding.interval_seconds") if f["enabled"] else 1,
                    scale=float(f["scale"]), quantum=float(f["quantum"]), rounding=f["rounding"], price=f["price"],
                    weighting=f["weighting"], enabled=f["enabled"])
    tiers = []
    for name in names:
        t = c["ladders"][name]
        tiers.append(([x["floor"] for x in t], [x["mmr"] for x in t], [x["imr"] for x in t]))
    ladder = _wrap("ladders", Ladder.build, tiers, dtype=dtype, names=names)
    lq = c["liquidation"]
    check_every = 1 if lq["check_every_seconds"] is None else _steps(
        grid, lq["check_every_seconds"], "liquidation.check_every_seconds")
    depth = _wrap("liquidation", DepthModel, arr([a["depth_usd"] for a in assets]), arr([a["spread"] for a in assets]),
                  float(lq["depth_distance"]), float(lq["impact_exponent"]), forced_cost=arr(lq["forced_cost"]),
                  vol_elasticity=float(lq["depth_vol_elasticity"]), depth_floor=float(lq["depth_floor"]),
                  vol_halflife_steps=max(1, round(lq["depth_vol_halflife_seconds"] / grid.step_seconds)))
    cooldown = 0
    if lq["cooldown_seconds"]:
        if lq["mode"] != "fraction":
            raise ConfigError("liquidation.cooldown_seconds: applies to mode 'fraction' only")
        cooldown = _steps(grid, lq["cooldown_seconds"], "liquidation.cooldown_seconds")
    liquidation = _wrap("liquidation", Liquidation, depth, arr(lq["fee_rate"]), buffer=arr(lq["buffer"]),
                        fraction=arr(lq["fraction"]), fraction_above=arr(lq["fraction_above_notional"]),
                        backstop_ratio=arr(lq["backstop_fraction_of_mm"]),
                        throttle=arr(lq["throttle_notional_per_step"]), check_every=check_every, bridge=lq["bridge"],
                        mode=lq["mode"], cooldown=cooldown,
                        delay=_steps(grid, lq["delay_seconds"], "liquidation.delay_seconds") if lq["delay_seconds"]
                        else 0, adl=lq["adl"], fairness=lq["fairness"], ledger=lq["ledger"],
                        backstop=lq["backstop_fraction_of_mm"] > 0,
                        throttled=lq["throttle_notional_per_step"] > 0)
    breaker = None
    cb = c["guardrails"]["circuit_breaker"]
    if cb is not None:
        breaker = _wrap("guardrails.circuit_breaker", CircuitBreaker, arr(cb["move"]),
                        _steps(grid, cb["window_seconds"], "guardrails.circuit_breaker.window_seconds"),
                        _steps(grid, cb["halt_seconds"], "guardrails.circuit_breaker.halt_seconds"))
    b = c["book"]
    accounts = list(b["accounts"])
    if b["csv"] is not None:
        accounts += read_book_csv(b["csv"], names)
    coll, size, entry, labels = _book_from_accounts(accounts, names, n)
    if b["generate"] is not None:
        g = dict(b["generate"])
        gb, gl = _wrap("book.generate", generate_book, g.pop("n_accounts"), [a["price"] for a in assets], ladder,
                       seed=g.pop("seed"), dtype=dtype, **g)
        coll += list(np.asarray(gb.collateral))
        size += list(np.asarray(gb.size))
        entry += list(np.asarray(gb.entry))
        labels = BookLabels(labels.account + gl.account, labels.mode + gl.mode, labels.unit + gl.unit)
    if not coll:
        raise ConfigError("book: no accounts (give book.accounts, book.csv or book.generate)")
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
    book = _wrap("book", Book, arr(coll), arr(size), arr(np.asarray(entry)))
    stress = build_stress(c, grid, prices, names, arr)
    model = _wrap("model", RiskModel, grid, prices, oracle, basis, mark, funding, ladder, book, liquidation,
                  arr(c["insurance_fund"]), breaker, **stress)
    c["asset_names"] = names
    if c["calibration"] is not None:
        c["calibration"] = resolve_calibration(c)  # unknown keys fail here too, not only in `calibrate`
    return model, labels, c


def _asset_mask(v, names, path) -> np.ndarray:
    """'all', one asset name or a list of names -> (assets,) bool."""
    if v == "all":
        return np.ones(len(names), bool)
    sel = [v] if isinstance(v, str) else v
    if not isinstance(sel, list) or not sel:
        raise ConfigError(f"{path}: must be 'all', an asset name or a list of asset names (got {v!r})")
    for x in sel:
        if x not in names:
            raise ConfigError(f"{path}: unknown asset {x!r} (assets: {', '.join(names)})")
    return np.isin(np.asarray(names), sel)


def _window_rows(grid, e, path) -> slice:
    """Rows (steps) of the schedule covered by an event window [start, start + duration)."""
    start, dur = float(e["start_seconds"]), float(e["duration_seconds"])
    if start < 0:
        raise ConfigError(f"{path}.start_seconds: must be >= 0 (got {start})")
    if start + dur > grid.horizon_seconds + 1e-9:
        raise ConfigError(f"{path}: the window ends at {start + dur:g} s, after the horizon "
                          f"({grid.horizon_seconds:g} s)")
    a = 0 if start == 0 else _steps(grid, start, f"{path}.start_seconds")
    return slice(a, a + _steps(grid, dur, f"{path}.duration_seconds"))


def build_stress(c: dict, grid, prices, names, arr) -> dict:
    """The cascade and stress pieces of a RiskModel (``impact``, ``cascade``, ``regimes``, ``garch``,
    ``schedule``) from a resolved config; each None when its section is absent."""
    from .cascade import IMPACT_LAWS, CascadeMonitor, Impact
    from .paths import Garch, Regimes, correlation_factor, ref_alpha_from_halflife
    from .scenario import Schedule

    n, steps = len(names), grid.n_steps
    out = {"impact": None, "cascade": None, "regimes": None, "garch": None, "schedule": None}
    cs = c["cascade"]
    if cs is not None:
        out["cascade"] = CascadeMonitor(_steps(grid, cs["window_seconds"], "cascade.window_seconds"))
        law = cs["impact"]
        if law not in (*IMPACT_LAWS, "none"):
            raise ConfigError(f"cascade.impact: must be one of none, {', '.join(IMPACT_LAWS)} (got {law!r})")
        if law == "power" and cs["impact_exponent"] is None:
            raise ConfigError("cascade.impact_exponent: required with impact 'power'")
        if law != "power" and cs["impact_exponent"] is not None:
            raise ConfigError(f"cascade.impact_exponent: only with impact 'power' ({law} fixes it)")
        if law != "none" and cs["permanent_fraction"] > 0:
            e = IMPACT_LAWS[law] if law != "power" else float(cs["impact_exponent"])
            out["impact"] = _wrap("cascade", Impact, arr(cs["permanent_fraction"]),
                                  float(c["liquidation"]["depth_distance"]), law, e)
    rg = c["regimes"]
    if rg is not None:
        sc = _num_list(rg["stress_correlation"], "regimes.stress_correlation")
        if sc.shape != (n, n):
            raise ConfigError(f"regimes.stress_correlation: must be {n}x{n} for {n} assets (got shape {sc.shape})")
        try:
            L = correlation_factor(sc)
        except ValueError as e:
            raise ConfigError(f"regimes.stress_{e}") from None  # "correlation: ..." -> regimes.stress_correlation
        days = grid.step_seconds / 86400.0
        if rg["switch"] == "shock" and rg["reference_halflife_seconds"] <= 0:
            raise ConfigError("regimes.reference_halflife_seconds: must be > 0")
        out["regimes"] = _wrap(
            "regimes", Regimes, arr(L), arr(_num_list(rg["vol_multiplier"], "regimes.vol_multiplier", n)),
            arr(_num_list(rg["depth_factor"], "regimes.depth_factor", n)),
            arr(-np.expm1(-rg["enter_rate_per_day"] * days)), arr(-np.expm1(-rg["exit_rate_per_day"] * days)),
            arr(rg["drawdown"]), arr(ref_alpha_from_halflife(max(rg["reference_halflife_seconds"], 1e-9)
                                                             / grid.step_seconds)), rg["switch"])
    g = c["garch"]
    if g is not None:
        try:
            a, b = Garch.per_step(_num_list(g["alpha"], "garch.alpha", n), _num_list(g["beta"], "garch.beta", n),
                                  g["fitted_seconds"] / grid.step_seconds)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(f"garch.{e}") from None
        if np.any(b < 0):
            raise ConfigError("garch.alpha: too large for the step (per-step beta would be negative)")
        out["garch"] = _wrap("garch", Garch, arr(a), arr(b))
    ev = c["events"]
    if ev is not None:
        shift = depth = frozen = forced = None
        for i, e in enumerate(ev["shocks"]):
            p = f"events.shocks[{i}]"
            rows = _window_rows(grid, e, p)
            shift = np.zeros((steps, n)) if shift is None else shift
            shift[rows] += _asset_mask(e["assets"], names, f"{p}.assets") * (
                np.log1p(e["return"]) / (rows.stop - rows.start))
        for i, e in enumerate(ev["depth_bursts"]):
            p = f"events.depth_bursts[{i}]"
            depth = np.ones((steps, n)) if depth is None else depth
            depth[_window_rows(grid, e, p)] *= np.where(_asset_mask(e["assets"], names, f"{p}.assets"), e["factor"], 1)
        for i, e in enumerate(ev["oracle_freezes"]):
            frozen = np.zeros(steps, bool) if frozen is None else frozen
            frozen[_window_rows(grid, e, f"events.oracle_freezes[{i}]")] = True
        for i, e in enumerate(ev["stress_windows"]):
            if rg is None:
                raise ConfigError(f"events.stress_windows[{i}]: needs a regimes section (the stress correlation)")
            forced = np.zeros(steps, bool) if forced is None else forced
            forced[_window_rows(grid, e, f"events.stress_windows[{i}]")] = True
        replace = False
        if ev["replay"] is not None:
            if shift is not None:
                raise ConfigError("events.replay: replaces the price path; shocks do not apply with it")
            shift, replace = _replay_returns(ev["replay"], grid, names), True
        sched = Schedule(None if shift is None else arr(shift), None if depth is None else arr(depth),
                         None if frozen is None else jnp.asarray(frozen),
                         None if forced is None else jnp.asarray(forced), replace)
        out["schedule"] = None if sched.empty else sched
    return out


def _whole(x: float, path: str) -> int:
    if not float(x).is_integer():
        raise ConfigError(f"{path}: a replay needs a whole number of seconds (got {x})")
    return int(x)


def _replay_returns(rp: dict, grid, names) -> np.ndarray:
    """(steps, assets) log returns of the real path (see ``replay``), rebased to the config's prices."""
    from . import replay, timeutil

    syms = rp["symbols"]
    missing = [a for a in names if a not in syms]
    if missing:
        raise ConfigError(f"events.replay.symbols: no symbol for asset {missing[0]} (give one per asset)")
    extra = sorted(set(syms) - set(names))
    if extra:
        raise ConfigError(f"events.replay.symbols.{extra[0]}: not an asset (assets: {', '.join(names)})")
    path = rp["csv"] if rp["csv"] is not None else replay.default_data_path()
    try:
        logp = replay.replay_log_prices(path, [str(syms[a]) for a in names], timeutil.parse_time(rp["start"], "start"),
                                        _whole(grid.horizon_seconds, "time.horizon_seconds"),
                                        _whole(grid.step_seconds, "time.step_seconds"), seed=rp["seed"],
                                        bar_seconds=_whole(rp["bar_seconds"], "events.replay.bar_seconds"))
    except ValueError as e:
        raise ConfigError(f"events.replay: {e}") from None
    return np.diff(logp, axis=0)


def resolve_calibration(c: dict) -> dict:
    """The ``calibration`` section of a resolved config, checked (``schema.Calibration``), defaults filled."""
    cal = schema.validate(schema.Calibration, c.get("calibration") or {}, "calibration").model_dump()
    names = c["asset_names"]
    if cal["assets"] != "all":
        for a in cal["assets"]:
            if a not in names:
                raise ConfigError(f"calibration.assets: unknown asset {a!r} (assets: {', '.join(names)})")
    return cal
