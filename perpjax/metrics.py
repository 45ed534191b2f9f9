"""Risk metrics from an ``Outcome``: intervals, tail measures with Monte Carlo errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

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


# ---- statistics of per-path columns, in memory or streamed over a stored run's chunk files
#
# One mechanism for both: a ``PathTable`` yields a run's per-path columns chunk by chunk (an in-memory
# ``Outcome`` is one chunk; a ``store.StoredOutcome`` one chunk per file, read one at a time), and
# every statistic below makes a few passes over it with memory bounded by a chunk. Order statistics are
# exact (radix selection on the floats' bits), so quantiles and VaR are the same numbers in both modes,
# equal to ``np.quantile``'s bit for bit; means, SDs and ES equal numpy's on one chunk and differ from them
# only in float rounding on several (float64 sums of the chunks' sums, the chunks' M2 combined by Chan et al.).


class PerPath(NamedTuple):
    """A per-path value computed from a chunk's columns: ``fn(*[chunk[k] for k in keys])`` (identity for
    one key). ``sd``: its standard deviation is wanted too."""

    keys: tuple
    fn: Callable | None = None
    sd: bool = False

    def of(self, chunk: dict):
        xs = [chunk[k] for k in self.keys]
        return xs[0] if self.fn is None else self.fn(*xs)


def per_path(*keys, fn=None, sd=False) -> PerPath:
    """``PerPath(keys, fn, sd)``: e.g. ``per_path("path_adl", "path_uncovered", fn=lambda a, u: a + u > 0)``."""
    return PerPath(tuple(keys), fn, sd)


class PathTable:
    """Per-path columns chunk by chunk: ``chunks(keys)`` yields dicts key -> (rows,) or (rows, n) arrays.

    From an ``Outcome`` (one chunk: its arrays), a ``store.StoredOutcome`` (its ``read_chunks``: one chunk
    file at a time) or a dict of equal-length arrays (one chunk)."""

    def __init__(self, source):
        self.source = source
        self.stored = hasattr(source, "read_chunks")
        self.n_chunks = source.n_chunks if self.stored else 1
        self.chunk_rows = source.chunk_rows if self.stored else None

    def chunks(self, keys):
        keys = sorted(set(keys))
        if self.stored:
            yield from self.source.read_chunks(keys)
        elif isinstance(self.source, dict):
            yield {k: self.source[k] for k in keys}
        else:
            yield {k: getattr(self.source, k) for k in keys}


def _keys_of(specs) -> set:
    return {k for sp in specs for k in sp.keys}


def moments(table: PathTable, specs: dict) -> dict:
    """name -> (n, mean, sd with ddof 1 or None) of each ``PerPath`` in ``specs``, in one pass.

    One chunk: numpy's own ``x.mean()`` / ``x.std(ddof=1)`` (numpy scalars, so later arithmetic rounds as
    it did on the array). Several: mean = (exact sum of the chunks' float64 sums) / n, and M2 combined
    from the chunks' (Chan, Golub and LeVeque 1979)."""
    single = table.n_chunks == 1
    parts = {k: [] for k in specs}
    for chunk in table.chunks(_keys_of(specs.values())):
        for name, sp in specs.items():
            x = sp.of(chunk)
            if single:
                sd = (x.std(ddof=1) if x.size > 1 else 0.0) if sp.sd else None
                parts[name] = (x.size, x.mean(), sd)
                continue
            x64 = np.asarray(x, np.float64)
            if x64.size:
                s = float(x64.sum())
                parts[name].append((x64.size, s, float(np.sum((x64 - s / x64.size) ** 2)) if sp.sd else 0.0))
    if single:
        return parts
    return {name: _combine(p, specs[name].sd) for name, p in parts.items()}


def _combine(parts, want_sd):
    n = sum(p[0] for p in parts)
    if n == 0:
        return 0, np.float64(np.nan), None
    mean = math.fsum(p[1] for p in parts) / n
    if not want_sd:
        return n, np.float64(mean), None
    m2 = math.fsum(p[2] for p in parts) + math.fsum(p[0] * (p[1] / p[0] - mean) ** 2 for p in parts)
    return n, np.float64(mean), np.float64(math.sqrt(m2 / (n - 1)) if n > 1 else 0.0)


MIN_BUDGET = 1 << 16  # values an order-statistic bin may hold before it is read whole (at least a chunk)
_SIGN = np.uint64(1 << 63)
_DIGIT = 16  # bits per radix pass


def _sort_keys(x) -> np.ndarray:
    """float64 values -> uint64 keys in the same order (IEEE bits, negatives flipped); -0.0 keyed as 0.0."""
    b = (np.asarray(x, np.float64) + 0.0).view(np.uint64)
    return np.where(b >= _SIGN, ~b, b | _SIGN)


def _from_key(k) -> float:
    k = np.uint64(k)
    b = k & ~_SIGN if k >= _SIGN else ~k
    return float(np.asarray(b, np.uint64).view(np.float64))


class _Bin:
    """Values whose key starts with ``prefix`` (its top ``bits`` bits), and the ranks wanted inside it."""

    def __init__(self, bits, prefix, ranks, collect, count=None):
        self.bits, self.prefix, self.ranks, self.collect = bits, prefix, ranks, collect  # ranks: [(in bin, overall)]
        self.count = count  # values in the bin (None: not known yet)
        self.counts = np.zeros(1 << _DIGIT, np.int64)
        self.lo, self.hi, self.kept = None, None, []

    def take(self, keys):
        sel = keys if self.bits == 0 else keys[(keys >> np.uint64(64 - self.bits)) == np.uint64(self.prefix)]
        if not sel.size:
            return
        if self.collect:
            self.kept.append(sel)
            return
        shift = np.uint64(64 - self.bits - _DIGIT)
        self.counts += np.bincount(((sel >> shift) & np.uint64((1 << _DIGIT) - 1)).astype(np.intp),
                                   minlength=1 << _DIGIT)
        lo, hi = sel.min(), sel.max()
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def settle(self, out, budget):
        """Record the ranks this pass decided in ``out``; return the narrower bins still to read."""
        if self.collect:
            v = np.sort(np.concatenate(self.kept))
            for r_in, r in self.ranks:
                out[r] = _from_key(v[r_in])
            return []
        if self.lo == self.hi:  # every value in the bin is the same (ties): done
            for _, r in self.ranks:
                out[r] = _from_key(self.lo)
            return []
        cum = np.cumsum(self.counts)
        children = {}
        for r_in, r in self.ranks:
            d = int(np.searchsorted(cum, r_in, side="right"))
            below = int(cum[d - 1]) if d else 0
            children.setdefault(d, []).append((r_in - below, r))
        bins = []
        for d, ranks in children.items():
            bits, prefix = self.bits + _DIGIT, (self.prefix << _DIGIT) | d
            if bits == 64:  # the key is fixed: all values equal
                for _, r in ranks:
                    out[r] = _from_key(prefix)
            else:
                c = int(self.counts[d])
                bins.append(_Bin(bits, prefix, ranks, collect=c <= budget, count=c))
        return bins


def order_statistics(table: PathTable, specs: dict, ranks: dict, budget: int | None = None) -> dict:
    """name -> {rank: value} (0-based ranks of the sorted values, as float64) of each ``PerPath``, exactly.

    Radix selection on the values' order-preserving 64-bit keys, 16 bits per pass: each pass counts the
    next 16 bits of the values inside the bin that holds each wanted rank; a bin of at most ``budget``
    values (default: the larger of a chunk and ``MIN_BUDGET``) is then read whole and sorted (the bins read
    whole in one pass hold at most ``budget`` values together); a bin whose values are all equal ends at
    once. Memory: a chunk, plus ``budget`` values. NaN anywhere: NaN, as ``np.quantile``.
    Also returns ``name -> dtype`` under the key ``"__dtype__"``."""
    n = table.source.n_paths if hasattr(table.source, "n_paths") else None
    budget = budget or max(table.chunk_rows or 0, MIN_BUDGET)
    out = {name: {} for name in specs}
    dtypes, nans = {}, set()
    bins = {name: [_Bin(0, 0, [(r, r) for r in sorted(set(ranks[name]))],
                        collect=(n is not None and n <= budget) or table.n_chunks == 1)]
            for name in specs}
    first = True
    while any(bins.values()):
        active = {name: sp for name, sp in specs.items() if bins[name]}
        for chunk in table.chunks(_keys_of(active.values())):
            for name, sp in active.items():
                x = np.asarray(sp.of(chunk))
                if first:
                    dtypes[name] = x.dtype
                    if x.dtype.kind == "f" and np.isnan(x).any():
                        nans.add(name)
                keys = _sort_keys(x)
                for b in bins[name]:
                    b.take(keys)
        first = False
        for name in active:
            bins[name] = [c for b in bins[name] for c in b.settle(out[name], budget)] if name not in nans else []
        _share_budget([b for bs in bins.values() for b in bs], budget)
    for name in nans:
        out[name] = {r: math.nan for r in ranks[name]}
    out["__dtype__"] = dtypes
    return out


def _share_budget(bins, budget):
    """Bins read whole in the next pass hold at most ``budget`` values together (smallest first); the
    others are narrowed once more."""
    total = 0
    for b in sorted((b for b in bins if b.collect), key=lambda b: b.count):
        total += b.count
        b.collect = total <= budget


def _inverted_cdf_rank(n: int, q: float) -> int:
    """The order statistic ``np.quantile(x, q, method="inverted_cdf")`` takes (numpy's own arithmetic)."""
    i = n * np.float64(q) - 1
    prev = np.floor(i)
    return max(int(prev if i - prev == 0 else prev + 1), 0)


def _linear_ranks(n: int, q: float) -> tuple[int, int, float]:
    """(lower rank, upper rank, weight) of ``np.quantile(x, q)`` (method "linear", numpy's arithmetic)."""
    v = (n - 1) * np.float64(q)
    prev = np.floor(v)
    gamma = float(v - prev)
    if v >= n - 1:
        return n - 1, n - 1, gamma
    return int(prev), int(prev) + 1, gamma


class Quantile(NamedTuple):
    """The ``q`` quantile of a ``PerPath`` (``method``: numpy's "linear" or "inverted_cdf")."""

    spec: PerPath
    q: float
    method: str = "linear"


def quantiles(table: PathTable, wanted: dict, n: int) -> dict:
    """name -> the value of each ``Quantile`` in ``wanted`` over ``n`` paths, equal to ``np.quantile`` on
    the whole column bit for bit (exact order statistics; numpy's interpolation on them)."""
    specs, ranks, plan = {}, {}, {}
    for name, w in wanted.items():
        col = (w.spec.keys, w.spec.fn)  # one selection per distinct column
        cid = next((c for c, sp in specs.items() if (sp.keys, sp.fn) == col), f"c{len(specs)}")
        specs.setdefault(cid, w.spec)
        if w.method == "inverted_cdf":
            r = _inverted_cdf_rank(n, w.q)
            plan[name] = (cid, r, r, None)
        else:
            plan[name] = (cid, *_linear_ranks(n, w.q))
        ranks.setdefault(cid, set()).update(plan[name][1:3])
    stats = order_statistics(table, specs, ranks)
    res = {}
    for name, (cid, lo, hi, gamma) in plan.items():
        a, b = stats[cid][lo], stats[cid][hi]
        dt = stats["__dtype__"].get(cid, np.float64)
        if gamma is None or math.isnan(a) or math.isnan(b):
            res[name] = float(np.asarray(a, dt)) if not math.isnan(a) else math.nan
        else:  # numpy's interpolation, by numpy: the quantile of [a, b] at gamma is lerp(a, b, gamma)
            res[name] = float(np.quantile(np.asarray([a, b], dt), gamma))
    return res


def var_es_table(table: PathTable, specs: dict, levels, n: int) -> dict:
    """(name, alpha) -> (VaR, ES, VaR SE, ES SE) of losses ``specs[name]`` at each level (see ``var_es``).

    Passes: the exact order statistics, then one pass for every ES (each chunk sorted once: on one
    chunk the sums run in the order ``var_es`` on an array always used)."""
    half = {a: Z95 * math.sqrt(n * a * (1 - a)) for a in levels}
    rk = {a: (_inverted_cdf_rank(n, a), int(np.clip(math.floor(n * a - half[a]), 0, n - 1)),
              int(np.clip(math.ceil(n * a + half[a]), 0, n - 1))) for a in levels}
    f64 = {name: PerPath(sp.keys, _as_f64(sp.fn)) for name, sp in specs.items()}
    stats = order_statistics(table, f64, {name: {r for a in levels for r in rk[a]} for name in specs})
    var = {(name, a): stats[name][rk[a][0]] for name in specs for a in levels}
    single = table.n_chunks == 1
    parts = {key: [] for key in var}
    for chunk in table.chunks(_keys_of(specs.values())):
        for name, sp in f64.items():
            xs = np.sort(sp.of(chunk))
            for a in levels:
                y = var[name, a] + np.maximum(xs - var[name, a], 0.0) / (1 - a)
                if single:
                    parts[name, a] = (y.size, y.mean(), y.std(ddof=1) if y.size > 1 else 0.0)
                elif y.size:
                    s = float(y.sum())
                    parts[name, a].append((y.size, s, float(np.sum((y - s / y.size) ** 2))))
    res = {}
    for (name, a), v in var.items():
        _, lo, hi = rk[a]
        vse = (stats[name][hi] - stats[name][lo]) / (2 * Z95)
        m_n, mean, sd = parts[name, a] if single else _combine(parts[name, a], True)
        res[name, a] = (v, float(mean), float(vse), float(sd / math.sqrt(n)) if n > 1 else 0.0)
    return res


def _as_f64(fn):
    if fn is None:
        return lambda x: np.asarray(x, np.float64)
    return lambda *xs: np.asarray(fn(*xs), np.float64)


def var_es(x, alpha: float):
    """Value-at-risk and expected shortfall of losses ``x`` at level ``alpha``, with standard errors.

    VaR is the empirical alpha-quantile (``inverted_cdf``); its SE comes from the distribution-free
    binomial interval of order statistics (width / 2z). ES is the mean of
    ``Y = VaR + (x - VaR)^+ / (1 - alpha)`` (Rockafellar-Uryasev), SE = std(Y)/sqrt(n).
    ``x``: an array (one chunk) or a ``(PathTable, PerPath)`` pair (streamed: ``var_es_table``).
    """
    if isinstance(x, tuple):
        table, spec = x
        n = table.source.n_paths
    else:
        x = np.asarray(x, np.float64).ravel()
        table, spec, n = PathTable({"x": x}), per_path("x"), x.size
    return var_es_table(table, {"x": spec}, (alpha,), n)["x", alpha]


def _level_key(alpha: float) -> str:
    return f"{alpha * 100:g}".replace(".", "_")


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
    """VaR / ES with SEs of the loss distributions, and the quantiles of the summary (exact, streamed)."""
    s = {}
    tails = var_es_table(t, TAILS, LEVELS, n)
    for name in TAILS:
        for a in LEVELS:
            v, e, vse, ese = tails[name, a]
            k = _level_key(a)
            s[f"{name}_var_{k}"], s[f"{name}_es_{k}"] = v, e
            s[f"{name}_var_{k}_se"], s[f"{name}_es_{k}_se"] = vse, ese
    notional, adl = per_path("path_liq_notional"), per_path("path_adl")
    wanted = {f"liquidated_notional_p{_level_key(q)}": Quantile(notional, q) for q in (0.5, 0.9, 0.99, 0.999)}
    wanted["adl_p99"] = Quantile(adl, 0.99)
    s.update(quantiles(t, wanted, n))
    return s


def summarize(out, model, labels, cfg, paths_table: bool = True) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """(venue summary dict, per-unit DataFrame, per-path DataFrame or None without ``paths_table``).

    ``out``: an ``Outcome`` or a ``store.StoredOutcome``; the per-path statistics stream over its
    chunks (``PathTable``: memory bounded by a chunk, the same quantiles in both)."""
    n = out.n_paths
    t = PathTable(out)
    step_s = model.grid.step_seconds
    s = {"paths": n, "steps": out.n_steps, "seed": cfg["seed"], "step_seconds": step_s,
         "horizon_seconds": model.grid.horizon_seconds, "units": model.n_units, "dtype": cfg["dtype"]}
    mom = moments(t, MEANS)
    m = {k: v[1] for k, v in mom.items()}
    s["p_any_liquidation"] = float(m["p_any_liquidation"])
    s["p_any_liquidation_se"] = float(math.sqrt(s["p_any_liquidation"] * (1 - s["p_any_liquidation"]) / n))
    s["expected_liquidations"] = float(m["expected_liquidations"])
    s["bad_debt_mean"] = float(m["bad_debt_mean"])
    s["bad_debt_mean_se"] = float(mom["bad_debt_mean"][2] / math.sqrt(n)) if n > 1 else 0.0
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
    s["p_insurance_fund_depleted_se"] = float(math.sqrt(short * (1 - short) / n))
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


def _initial_equity(model):
    from .engine import initial_equity

    return initial_equity(model)
