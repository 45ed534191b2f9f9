"""Every per-unit and per-path output of the engine, declared once.

``OUTPUTS`` is the table. Each row names one quantity a path produces, its scope and dtype, how the
step folds its increment into the running value, and how the driver reduces it over paths on the
host (``Stat``: the ``Outcome`` field it feeds, the reduction, and its per-path table column, if
any). From it are generated: the carried running sums ``UnitAccounts`` / ``VenueAccounts`` and their
zeros and per-step update (``init_accounts``, ``accumulate``), the flattened per-path arrays
``UnitPaths``, the run result ``Outcome``, the driver's reductions (``new_accumulators``,
``reduce_chunk``), the chunk files' column names (``stored_name``) and the per-path table
(``path_columns`` / ``path_table``: the one set of per-path names and values, in memory and read back
from an out dir). A new per-unit metric is one row here plus its increment in the step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cascade import CASCADE_EDGES, CascadeState, drawdown_fraction

# Host reductions (over the paths of a chunk; ``x`` is (paths, units) or (paths,)):
#   sum, sum_sq, count_pos (x > 0), count_nonzero (x != 0): per unit, summed over paths;
#   path_sum, path_count_pos: per path, over units; path: the per-path value as is.
REDUCTIONS = ("sum", "sum_sq", "count_pos", "count_nonzero", "path_sum", "path_count_pos", "path")


class Stat(NamedTuple):
    """One ``Outcome`` field reduced from an output."""

    key: str  # the Outcome field
    how: str  # one of REDUCTIONS
    doc: str
    column: str | None = None  # per-path table column ("{asset}" expands per asset)
    transform: object = None  # applied to the column's values (e.g. drawdown_fraction)
    account: str | None = None  # per-unit table column: the mean per path (sum, count_*), or for a
    #                             sum_sq stat the standard error of the mean of its output's sum stat


class Output(NamedTuple):
    """One quantity a path produces."""

    name: str
    scope: str  # "unit" (UnitAccounts), "venue" (VenueAccounts), "path" (end of path), "cascade" (CascadeState)
    dtype: str  # "float" (the model's dtype) or "int32"
    update: str | None  # how the step folds its increment in: add, min, set, first (the step number)
    doc: str
    stats: tuple = ()
    shape: str = "units"  # per path: units, assets, bins or scalar
    f64: bool = False  # always reduced in float64 (floats are; ints are otherwise kept as ints)


def _s(key, how, doc, column=None, transform=None, account=None):
    return Stat(key, how, doc, column, transform, account)


OUTPUTS = (
    # Per unit. equity_T - equity_0 = mtm - funding_paid + basis - slippage - fee + bad_debt - adl_charge
    # - backstop (checked by the conservation tests).
    Output("liq_step", "unit", "int32", "first", "step of the first liquidation, 0 = never", (
        _s("liq_count", "count_pos", "(units,) paths on which the unit was liquidated at least once"),
        _s("liq_step_sum", "sum", "(units,) sum of first-liquidation steps over those paths"),
        _s("path_n_liquidations", "path_count_pos", "(paths,) units liquidated at least once", "liquidations"))),
    Output("liq_events", "unit", "int32", "add", "liquidations (partial or full)", (
        _s("liq_events_sum", "sum", "(units,) liquidation events (partial ones included)",
           account="expected_liquidation_events"),
        _s("path_liq_events", "path_sum", "(paths,) liquidation events", "liquidation_events"))),
    Output("fee", "unit", "float", "add", "liquidation fees paid (to the insurance fund)", (
        _s("fee_sum", "sum", "(units,) liquidation fees", account="expected_fee"),
        _s("path_fees", "path_sum", "(paths,) liquidation fees", "fees"))),
    Output("bad_debt", "unit", "float", "add", "equity below zero written off", (
        _s("bad_debt_sum", "sum", "(units,) bad debt", account="expected_bad_debt"),
        _s("bad_debt_sq_sum", "sum_sq", "(units,) sum of squared bad debt", account="expected_bad_debt_se"),
        _s("path_bad_debt", "path_sum", "(paths,) bad debt", "bad_debt"))),
    Output("liq_notional", "unit", "float", "add", "notional filled by liquidations", (
        _s("liq_notional_sum", "sum", "(units,) liquidated notional", account="expected_liquidated_notional"),
        _s("path_liq_notional", "path_sum", "(paths,) liquidated notional", "liquidated_notional"))),
    Output("slippage", "unit", "float", "add", "cost of forced fills vs mid", (
        _s("slippage_sum", "sum", "(units,) slippage", account="expected_slippage"),
        _s("path_slippage", "path_sum", "(paths,) slippage", "slippage"))),
    Output("basis", "unit", "float", "add", "value of filling at mid rather than at mark (ledger only)"),
    Output("funding_paid", "unit", "float", "add", "funding paid", (
        _s("funding_sum", "sum", "(units,) funding paid", account="expected_funding_paid"),
        _s("path_funding_net", "path_sum", "(paths,) funding paid by the book (to the rest of the market)",
           "funding_paid"))),
    Output("adl_charge", "unit", "float", "add", "paid to cover others' bad debt (auto-deleveraging)", (
        _s("adl_charge_sum", "sum", "(units,) ADL charges", account="expected_adl_charge"),
        _s("adl_count", "count_pos", "(units,) paths on which the unit paid an ADL charge", account="p_adl"))),
    Output("mtm", "unit", "float", "add", "mark-to-market PnL of the positions held (ledger only)"),
    Output("backstop", "unit", "float", "add", "equity handed to the backstop vault with the positions", (
        _s("backstop_sum", "sum", "(units,) equity handed to the backstop vault"),
        _s("backstop_count", "count_nonzero", "(units,) paths on which the vault took the unit over",
           account="p_backstop"))),
    Output("over_notional", "unit", "float", "add", "notional liquidated beyond the minimum that restored MM", (
        _s("over_notional_sum", "sum", "(units,) fairness: notional beyond the minimum",
           account="expected_over_liquidated_notional"),
        _s("path_over_notional", "path_sum", "(paths,) notional beyond the minimum"))),
    Output("excess_cost", "unit", "float", "add", "slippage + fee beyond the minimum close's (fairness)", (
        _s("excess_cost_sum", "sum", "(units,) fairness: cost beyond the minimum's", account="expected_excess_cost"),
        _s("path_excess_cost", "path_sum", "(paths,) cost beyond the minimum's"))),
    Output("artefacts", "unit", "int32", "add", "liquidations executed while mark (or index) showed a healthy "
           "account", (_s("artefacts_sum", "sum", "(units,) liquidations while the account looked healthy"),)),
    # Per path, venue-wide (scalars).
    Output("fund", "venue", "float", "set", "insurance-fund change so far (USD): fees in, bad debt paid out",
           shape="scalar"),
    Output("fund_min", "venue", "float", "min", "running minimum of ``fund``", (
        _s("path_fund_min", "path", "(paths,) lowest insurance-fund change (<= 0)", "insurance_fund_min_change"),),
           shape="scalar"),
    Output("fund_paid", "venue", "float", "add", "bad debt paid by the fund", (
        _s("path_fund_paid", "path", "(paths,) bad debt the fund paid", "insurance_fund_paid"),), shape="scalar"),
    Output("adl", "venue", "float", "add", "bad debt covered by ADL charges", (
        _s("path_adl", "path", "(paths,) bad debt covered by ADL", "adl"),), shape="scalar"),
    Output("adl_events", "venue", "int32", "add", "steps with an ADL", shape="scalar"),
    Output("uncovered", "venue", "float", "add", "bad debt neither the fund nor ADL covered", (
        _s("path_uncovered", "path", "(paths,) bad debt neither covered", "uncovered_bad_debt"),), shape="scalar"),
    Output("backstop_pnl", "venue", "float", "set", "backstop vault: equity received + mark-to-market of its "
           "positions", (_s("path_backstop_pnl", "path", "(paths,) backstop vault PnL"),), shape="scalar"),
    Output("backstop_events", "venue", "int32", "add", "backstop takeovers", shape="scalar"),
    Output("breaker_fires", "venue", "int32", "add", "circuit-breaker halts", (
        _s("path_breaker_fires", "path", "(paths,) circuit-breaker halts"),), shape="scalar"),
    Output("throttled_steps", "venue", "int32", "add", "steps where the throttle cut forced flow", (
        _s("path_throttled_steps", "path", "(paths,) steps the throttle bit"),), shape="scalar"),
    Output("stress_steps", "venue", "int32", "add", "steps spent in the stress regime", (
        _s("path_stress_steps", "path", "(paths,) steps in the stress regime"),), shape="scalar"),
    # End of path.
    Output("loss", "path", "float", None, "initial equity - final equity (USD)", (
        _s("loss_sum", "sum", "(units,) loss", account="expected_loss"),
        _s("loss_sq_sum", "sum_sq", "(units,) sum of squared losses", account="expected_loss_se"),
        _s("path_trader_loss", "path_sum", "(paths,) the book's loss", "trader_loss"))),
    Output("log_return", "path", "float", None, "log of final / initial true price", (
        _s("path_log_return", "path", "(paths, assets) log return of each asset", "log_return_{asset}"),),
           shape="assets"),
    # Cascades (``CascadeState`` fields; zeros unless the model monitors cascades).
    Output("starts", "cascade", "int32", None, "liquidations in an episode's first round", (
        _s("cascade_starts_sum", "sum", "(units,) liquidations in an episode's first round",
           account="p_starts_cascade"),), f64=True),
    Output("hist", "cascade", "int32", None, "finished episodes by notional", (
        _s("cascade_hist", "sum", "(bins,) episodes by notional (cascade.CASCADE_EDGES)"),), shape="bins", f64=True),
    Output("drawdown", "cascade", "float", None, "max log drawdown of the price, with feedback", (
        _s("path_drawdown", "path", "(paths, assets) max log drawdown, with feedback", "drawdown_{asset}",
           drawdown_fraction),), shape="assets", f64=True),
    Output("drawdown_exog", "cascade", "float", None, "the same on the no-feedback path", (
        _s("path_drawdown_exog", "path", "(paths, assets) the same on the no-feedback path",
           "drawdown_no_feedback_{asset}", drawdown_fraction),), shape="assets", f64=True),
    Output("max_rounds", "cascade", "int32", None, "most liquidation rounds chained in one episode", (
        _s("path_cascade_rounds", "path", "(paths,) most rounds in one episode", "cascade_rounds"),),
           shape="scalar", f64=True),
    Output("max_notional", "cascade", "float", None, "largest episode notional", (
        _s("path_cascade_max_notional", "path", "(paths,) largest episode notional", "cascade_max_notional"),),
           shape="scalar", f64=True),
    Output("episodes", "cascade", "int32", None, "episodes started", (
        _s("path_cascade_episodes", "path", "(paths,) episodes", "cascade_episodes"),), shape="scalar", f64=True),
)
for _o in OUTPUTS:
    assert all(st.how in REDUCTIONS for st in _o.stats), _o.name


def _rows(scope):
    return tuple(o for o in OUTPUTS if o.scope == scope)


def _doc(title, rows):
    return title + "\n\n" + "\n".join(f"    {o.name}: {o.doc} ({o.dtype})" for o in rows)


UnitAccounts = NamedTuple("UnitAccounts", [(o.name, jax.Array) for o in _rows("unit")])
UnitAccounts.__doc__ = _doc(
    "Per-unit running sums of a path: every term of the unit's equity change (``outputs.OUTPUTS``).\n\n"
    "    equity_T - equity_0 = mtm - funding_paid + basis - slippage - fee + bad_debt - adl_charge - backstop\n"
    "``basis`` and ``mtm`` are kept only with ``liquidation.ledger`` on; optional terms pass through\n"
    "untouched when their mechanism is off (each running sum costs carry traffic per step).", _rows("unit"))
VenueAccounts = NamedTuple("VenueAccounts", [(o.name, jax.Array) for o in _rows("venue")])
VenueAccounts.__doc__ = _doc("Venue-level running sums of a path (scalars).", _rows("venue"))


class PathOutcome(NamedTuple):
    """Per-path results of one chunk (leading dim: paths)."""

    loss: jax.Array  # (paths, units) initial equity - final equity (USD)
    acct: UnitAccounts  # each (paths, units)
    venue: VenueAccounts  # each (paths,)
    log_return: jax.Array  # (paths, assets) log of final / initial true price
    cascade: CascadeState | None  # each (paths, ...) when cascades are monitored


UnitPaths = NamedTuple("UnitPaths", [(f, np.ndarray) for f in (
    "loss", *UnitAccounts._fields, *(f"venue_{v}" for v in VenueAccounts._fields), "log_return")])
UnitPaths.__doc__ = "Per-path arrays of a run, flattened: (paths, units) per unit field, (paths,) venue_*."


def _stat_keys(cascade: bool):
    return [st.key for o in OUTPUTS if (o.scope == "cascade") == cascade for st in o.stats]


Outcome = NamedTuple("Outcome", [("n_paths", int), ("n_steps", int),
                                 *[(k, np.ndarray) for k in _stat_keys(False)], ("cascade_on", bool),
                                 *[(k, np.ndarray) for k in _stat_keys(True)], ("unit_paths", UnitPaths | None)])
Outcome.__doc__ = ("Results of a whole run, reduced over chunks on the host (numpy, float64).\n\n"
                   "Per-path venue quantities are kept (O(paths)); per-unit quantities are streamed as sums,\n"
                   "so memory is bounded by the chunk, not paths x units. Fields (``outputs.OUTPUTS``):\n\n"
                   "    n_paths, n_steps; cascade_on: whether the cascade fields are filled (else zeros);\n"
                   "    unit_paths: per-path per-unit arrays when requested (``UnitPaths``)\n"
                   + "\n".join(f"    {st.key}: {st.doc}" for o in OUTPUTS for st in o.stats))


# ---- in the kernel

def init_accounts(units: int, dtype) -> tuple[UnitAccounts, VenueAccounts]:
    """All running sums at zero."""
    def zeros(o, shape):
        return jnp.zeros(shape, jnp.int32 if o.dtype == "int32" else dtype)
    return (UnitAccounts(*(zeros(o, (units,)) for o in _rows("unit"))),
            VenueAccounts(*(zeros(o, ()) for o in _rows("venue"))))


def accumulate(acc, inc: dict, t):
    """Fold one step's increments into ``acc`` (a ``UnitAccounts`` or ``VenueAccounts``).

    ``inc`` maps a field to its increment; a field absent or None is left untouched (its mechanism
    is off: no per-step work). ``first`` fields take ``t`` where the increment (a mask) is set first."""
    rows = {o.name: o for o in OUTPUTS}
    new = {}
    for name, a in acc._asdict().items():
        v = inc.get(name)
        how = rows[name].update
        if v is None:
            new[name] = a
        elif how == "add":
            new[name] = a + v
        elif how == "min":
            new[name] = jnp.minimum(a, v)
        elif how == "set":
            new[name] = v
        else:  # first
            new[name] = jnp.where(v & (a == 0), t, a)
    unknown = set(inc) - set(new)
    if unknown:
        raise KeyError(f"accumulate: no output named {sorted(unknown)}")
    return type(acc)(**new)


# ---- on the host

def new_accumulators(units: int, n_assets: int) -> tuple[dict, dict]:
    """(running per-unit sums, per-path lists), keyed by ``Outcome`` field."""
    acc, per_path = {}, {}
    for o in OUTPUTS:
        for st in o.stats:
            if st.how.startswith("path"):
                per_path[st.key] = []
            else:
                acc[st.key] = np.zeros(len(CASCADE_EDGES) + 1 if o.shape == "bins" else units)
    return acc, per_path


def _host_values(out: PathOutcome, n: int) -> dict:
    def cut(a):
        return np.asarray(a)[:n]
    vals = {("unit", k): cut(v) for k, v in out.acct._asdict().items()}
    vals.update({("venue", k): cut(v) for k, v in out.venue._asdict().items()})
    vals.update({("path", "loss"): cut(out.loss), ("path", "log_return"): cut(out.log_return)})
    if out.cascade is not None:
        vals.update({("cascade", k): cut(v) for k, v in out.cascade._asdict().items()})
    return vals


def reduce_chunk(out: PathOutcome, n: int, n_assets: int, acc: dict, per_path: dict) -> None:
    """Add the first ``n`` paths of a chunk to ``acc`` / ``per_path`` (floats in float64)."""
    vals = _host_values(out, n)
    for o in OUTPUTS:
        x = vals.get((o.scope, o.name))
        if x is None:  # cascades not monitored: per-path zeros, sums untouched
            for st in o.stats:
                if st.how == "path":
                    per_path[st.key].append(np.zeros((n, n_assets) if o.shape == "assets" else (n,)))
            continue
        if o.f64 or np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        for st in o.stats:
            if st.how == "sum":
                acc[st.key] += x.sum(0)
            elif st.how == "sum_sq":
                acc[st.key] += (x**2).sum(0)
            elif st.how == "count_pos":
                acc[st.key] += (x > 0).sum(0)
            elif st.how == "count_nonzero":
                acc[st.key] += (x != 0).sum(0)
            elif st.how == "path_sum":
                per_path[st.key].append(x.sum(1))
            elif st.how == "path_count_pos":
                per_path[st.key].append((x > 0).sum(1))
            else:
                per_path[st.key].append(x)


def flatten(out: PathOutcome) -> UnitPaths:
    """A chunk's per-path arrays as ``UnitPaths``."""
    return UnitPaths(out.loss, *out.acct, *out.venue, out.log_return)


def stored_name(key: str, asset: str | None = None) -> str:
    """The column of ``Outcome`` per-path field ``key`` in a run's chunk files (``store.ChunkStore``, the
    checkpoint): ``key`` itself, or ``key__ASSET`` for one asset of a (paths, assets) field. Internal to
    the checkpoint: the per-path *table* a user reads has the names of ``path_columns``."""
    return key if asset is None else f"{key}__{asset}"


def path_columns(fields, asset_names, cascade_on: bool | None = None) -> dict:
    """The per-path table's columns, the one set of names and values every reader of per-path results
    gets (``Result.paths``, ``perpjax.load(DIR).paths``, the report): each ``Stat.column`` (``{asset}``
    expanded per asset, e.g. ``log_return_BTC``) holding the stat's values after its ``transform`` (e.g.
    ``drawdown_BTC`` a fraction); the cascade columns only when cascades are monitored.

    ``fields``: an ``Outcome`` / ``store.StoredOutcome`` (per-path fields as attributes, ``cascade_on``
    its own), or a mapping of a chunk file's columns (``stored_name``; ``cascade_on`` required)."""
    flat = not hasattr(fields, "n_paths")
    if cascade_on is None:
        if flat:
            raise ValueError("path_columns: say whether cascades were monitored (cascade_on) for stored columns")
        cascade_on = fields.cascade_on
    cols = {}
    for o in OUTPUTS:
        if o.scope == "cascade" and not cascade_on:
            continue
        for st in o.stats:
            if st.column is None:
                continue
            per_asset = "{asset}" in st.column
            if flat:
                vals = ({a: fields[stored_name(st.key, a)] for a in asset_names} if per_asset
                        else fields[st.key])
            else:
                v = getattr(fields, st.key)
                vals = {a: v[:, i] for i, a in enumerate(asset_names)} if per_asset else v
            if per_asset:
                cols.update({st.column.format(asset=a): _transformed(st, x) for a, x in vals.items()})
            else:
                cols[st.column] = _transformed(st, vals)
    return cols


def _transformed(st: Stat, v):
    return v if st.transform is None else st.transform(v)


def path_table(fields, asset_names, cascade_on: bool | None = None, index=None):
    """``path_columns`` as a DataFrame whose index, named ``path``, is the path's global index (0..n-1
    unless ``index`` gives it)."""
    import pandas as pd

    cols = path_columns(fields, asset_names, cascade_on)
    n = len(next(iter(cols.values()))) if cols else 0
    idx = pd.RangeIndex(n, name="path") if index is None else pd.Index(np.asarray(index), name="path")
    return pd.DataFrame(cols, index=idx)


def account_columns(out) -> dict:
    """The per-unit table's generated columns (``Stat.account``), in table order: the mean per path of
    each (units,) sum or count, and for a ``sum_sq`` stat the standard error of its sum stat's mean."""
    n = out.n_paths
    cols = {}
    for o in OUTPUTS:
        sums = {st.how: st.key for st in o.stats}
        for st in o.stats:
            if st.account is None:
                continue
            if st.how == "sum_sq":
                mean = getattr(out, sums["sum"]) / n
                cols[st.account] = np.sqrt(np.maximum(getattr(out, st.key) / n - mean**2, 0) / max(n - 1, 1))
            else:
                cols[st.account] = getattr(out, st.key) / n
    return cols
