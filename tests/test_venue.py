"""Venue mechanics of the liquidation path: conservation of value, partial-liquidation
invariants, insurance fund and ADL, over many random books and seeds (float64)."""

import jax.numpy as jnp
import numpy as np
import pytest

from perpjax.engine import simulate
from perpjax.liquidation import DepthModel, Liquidation
from perpjax.margin import Ladder

from .helpers import build, default_config

MODES = ["full", "buffer", "tier_step", "fraction"]


def stress_config(mode, seed, *, fund=5_000.0, adl=True, extra=None):
    """The default market over 6 hours, a generated leveraged book, a small fund, ADL on."""
    cfg = default_config()
    cfg["time"]["horizon_seconds"] = 6 * 3600
    cfg["dtype"] = "float64"
    cfg["insurance_fund"] = fund
    cfg["book"] = {"accounts": cfg["book"]["accounts"][:6],
                   "generate": {"n_accounts": 40, "seed": seed, "leverage": [5, 20, 50, 100],
                                "leverage_weights": [0.25, 0.25, 0.25, 0.25], "isolated_fraction": 0.3}}
    for a in cfg["assets"]:
        a["depth_usd"] = float(a["depth_usd"]) / 20  # thin books: forced fills leave bad debt
    cfg["liquidation"].update(mode=mode, adl=adl, buffer=0.02, fraction=0.25, fraction_above_notional=50_000.0,
                              ledger=True)
    if mode == "fraction":
        cfg["liquidation"]["cooldown_seconds"] = 120
    cfg["liquidation"].update(extra or {})
    return cfg


EXTRAS = {
    "plain": {},
    "backstop_delay_fair": {"backstop_fraction_of_mm": 0.5, "delay_seconds": 120, "fairness": True},
    "throttle_decay": {"throttle_notional_per_step": 2e5, "depth_vol_elasticity": 1.0, "forced_cost": 0.001},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed, extra", [(1, "plain"), (2, "backstop_delay_fair"), (3, "throttle_decay")])
def test_value_is_conserved_on_every_path(mode, seed, extra):
    """Per unit: equity_T - equity_0 = mtm - funding + basis - slippage - fee + bad debt - ADL - backstop.
    Per venue: fund change = fees - fund payouts; bad debt = fund payouts + ADL + uncovered."""
    model, _, _ = build(stress_config(mode, seed, extra=EXTRAS[extra]))
    out = simulate(model, seed=seed, n_paths=300, chunk_size=300, keep_unit_paths=True)
    u = out.unit_paths
    assert ((u.bad_debt > 0) | (u.backstop != 0)).any() and (u.liq_events > 0).any()
    lhs = -u.loss
    rhs = u.mtm - u.funding_paid + u.basis - u.slippage - u.fee + u.bad_debt - u.adl_charge - u.backstop
    scale = 1.0 + np.abs(u.mtm) + u.liq_notional
    np.testing.assert_array_less(np.abs(lhs - rhs), 1e-9 * scale)
    np.testing.assert_allclose(u.venue_fund, u.fee.sum(1) - u.venue_fund_paid, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(u.bad_debt.sum(1), u.venue_fund_paid + u.venue_adl + u.venue_uncovered,
                               rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(u.adl_charge.sum(1), u.venue_adl, rtol=1e-12, atol=1e-6)
    assert np.all(u.venue_fund_min >= -float(model.insurance_fund) - 1e-6)  # the fund never goes below zero
    assert np.all(u.adl_charge >= 0) and np.all(u.bad_debt >= 0) and np.all(u.fee >= 0)
    if extra == "backstop_delay_fair":
        assert (u.venue_backstop_events > 0).any() and np.all(u.over_notional >= 0)
    if extra == "throttle_decay":
        assert (u.venue_throttled_steps > 0).any()


def test_adl_charges_only_opposite_profitable_positions():
    """A 100x BTC long whale in a thin book goes bankrupt with no fund: the BTC short pays,
    the BTC long, the ETH-only account and the account with no BTC exposure never pay."""
    cfg = default_config()
    cfg["time"]["horizon_seconds"] = 12 * 3600
    cfg["dtype"] = "float64"
    cfg["insurance_fund"] = 0.0
    cfg["jumps"] = None
    cfg["assets"][0]["depth_usd"] = 2e5
    cfg["liquidation"]["adl"] = True
    cfg["book"] = {"accounts": [
        {"id": "whale_long", "collateral": 9.5e4, "positions": [{"asset": "BTC", "size": 100, "entry": 95000}]},
        {"id": "btc_short", "collateral": 5e5, "positions": [{"asset": "BTC", "size": -20, "entry": 95000}]},
        {"id": "btc_long", "collateral": 5e5, "positions": [{"asset": "BTC", "size": 5, "entry": 95000}]},
        {"id": "eth_short", "collateral": 5e5, "positions": [{"asset": "ETH", "size": -100, "entry": 3500}]},
    ]}
    model, labels, _ = build(cfg)
    out = simulate(model, seed=3, n_paths=2000, chunk_size=2000, keep_unit_paths=True)
    u = out.unit_paths
    idx = {n: i for i, n in enumerate(labels.unit)}
    assert (u.venue_adl > 0).mean() > 0.05
    assert np.all(u.adl_charge[:, idx["btc_long"]] == 0)
    assert np.all(u.adl_charge[:, idx["eth_short"]] == 0)
    assert np.all(u.adl_charge[:, idx["whale_long"]] == 0)
    assert (u.adl_charge[:, idx["btc_short"]] > 0).any()
    # The short pays at most the profit it had; nothing is left uncovered while it had enough.
    np.testing.assert_allclose(u.adl_charge.sum(1), u.venue_adl, rtol=1e-12, atol=1e-6)


def _random_units(rng, n_units=60, n_assets=3):
    unit = np.repeat(np.arange(n_units), 2)
    asset = np.tile(np.arange(2), n_units) + rng.integers(0, 2, 2 * n_units) * (n_assets - 2)
    asset[1::2] = np.where(asset[1::2] == asset[::2], (asset[::2] + 1) % n_assets, asset[1::2])
    mark = np.array([100.0, 50.0, 20.0])[asset]
    size = rng.choice([-1, 1], 2 * n_units) * np.exp(rng.normal(8.0, 1.5, 2 * n_units)) / mark
    entry = mark * np.exp(rng.normal(0, 0.02, 2 * n_units))
    collateral = rng.uniform(0.005, 0.08, n_units) * np.bincount(unit, np.abs(size) * mark)
    return unit, asset, size, entry, mark, collateral


def _execute(mode, rng, **kw):
    unit, asset, size, entry, mark, coll = _random_units(rng)
    n_units = coll.shape[0]
    f64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    ladder = Ladder.build([([0, 1e4, 1e5], [0.01, 0.02, 0.05], [0.02, 0.04, 0.1])] * 3, dtype=jnp.float64)
    liq = Liquidation(DepthModel(f64([2e5, 1e5, 5e4]), f64([1e-4] * 3)), f64(0.005), buffer=f64(0.02),
                      fraction=f64(0.3), fraction_above=f64(2e4), mode=mode, **kw)

    def unit_sum(x):
        return jnp.zeros((n_units,), x.dtype).at[unit].add(x)

    trigger = jnp.ones((n_units,), bool)
    mid = mark * (1 + rng.normal(0, 1e-3, mark.shape))
    f = liq.execute(trigger, f64(coll), f64(size), f64(entry), f64(mid), f64(mark), asset, unit, unit_sum, ladder)
    return f, (unit, asset, size, entry, mark, coll), ladder, unit_sum


@pytest.mark.parametrize("seed", range(5))
def test_buffer_partial_restores_margin_plus_buffer(seed):
    f, (unit, asset, size, entry, mark, coll), ladder, unit_sum = _execute("buffer", np.random.default_rng(seed))
    rest = np.asarray(f.size)
    equity = np.asarray(f.collateral) + np.bincount(unit, rest * (mark - entry), minlength=coll.size)
    n_rest = np.abs(rest) * mark
    mm = np.bincount(unit, np.asarray(ladder.maintenance_and_rate(jnp.asarray(n_rest), asset)[0]),
                     minlength=coll.size)
    need = mm + 0.02 * np.bincount(unit, n_rest, minlength=coll.size)
    partial = ~np.asarray(f.full)
    assert partial.sum() > 5 and (~partial).sum() > 0
    assert np.all(equity[partial] >= need[partial] - 1e-6 * (1 + need[partial]))
    # ... and it is close to the minimum: one bisection step less would not restore health.
    assert np.all(np.abs(rest) <= np.abs(size) + 1e-12)


@pytest.mark.parametrize("mode", ["buffer", "tier_step", "fraction"])
@pytest.mark.parametrize("seed", range(3))
def test_partial_never_closes_more_than_full(mode, seed):
    fp, base, _, _ = _execute(mode, np.random.default_rng(seed))
    ff, _, _, _ = _execute("full", np.random.default_rng(seed))
    assert np.all(np.asarray(fp.notional) <= np.asarray(ff.notional) * (1 + 1e-9) + 1e-9)
    assert np.all(np.asarray(ff.size) == 0)
    # Bad debt arises only from a full close-out.
    assert np.all((np.asarray(fp.bad_debt) == 0) | np.asarray(fp.full))


def test_tier_step_cuts_each_position_to_its_tier_floor():
    f, (unit, asset, size, entry, mark, coll), ladder, _ = _execute("tier_step", np.random.default_rng(7))
    n0 = np.abs(size) * mark
    floors = np.asarray(ladder.floors)[asset]
    floor_k = np.max(np.where(n0[:, None] >= floors, floors, 0.0), axis=1)
    n1 = np.abs(np.asarray(f.size)) * mark
    kept = ~np.asarray(f.full)[unit]
    np.testing.assert_allclose(n1[kept], floor_k[kept], rtol=1e-9)


def test_partial_paths_are_chunk_invariant():
    model, _, _ = build(stress_config("fraction", 4), ["dtype=float32"])
    a = simulate(model, seed=5, n_paths=300, chunk_size=300, keep_unit_paths=True)
    b = simulate(model, seed=5, n_paths=300, chunk_size=128, keep_unit_paths=True)
    for x, y in zip(a.unit_paths, b.unit_paths, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("override, needle", [
    ("liquidation.mode=twap", "mode: must be one of"),
    ("liquidation.fraction=0", "fraction: must lie in (0, 1]"),
    ("liquidation.fraction=1.5", "fraction: must lie in (0, 1]"),
    ("liquidation.buffer=-0.1", "buffer: must be >= 0"),
    ("liquidation.cooldown_seconds=30", "cooldown_seconds: applies to mode 'fraction' only"),
])
def test_bad_liquidation_settings_name_the_field(override, needle):
    from perpjax.config import ConfigError

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build(default_config(), [override])


def test_cooldown_shorter_than_a_step_is_rejected():
    from perpjax.config import ConfigError

    with pytest.raises(ConfigError, match="cooldown_seconds: must be a positive multiple of the step"):
        build(default_config(), ["liquidation.mode=fraction", "liquidation.cooldown_seconds=30"])


def _one_account(mark_kind, **liq):
    cfg = default_config()
    cfg["time"]["horizon_seconds"] = 12 * 3600
    cfg["dtype"] = "float64"
    cfg["mark"] = {"kind": mark_kind, "window_seconds": 600}
    cfg["basis"] = {"stationary_std": 0.0}
    cfg["book"] = {"accounts": [{"id": "eth_20x", "mode": "isolated",
                                 "positions": [{"asset": "ETH", "size": 300, "entry": 3500, "margin": 55_000}]}]}
    cfg["liquidation"].update(fairness=True, **liq)
    return cfg


def test_mark_lag_artefacts_need_a_lagging_check_or_a_delay():
    """Checked every step, neither mark = index nor an EMA mark liquidates while the index is healthy
    (an EMA step is a convex combination: it can only cross the barrier when the index is beyond it).
    Checks every 10 minutes on the EMA, or a 10-minute execution delay, do liquidate recovered accounts."""
    runs = {}
    for name, kind, liq in (("index", "index", {}), ("ema", "ema", {}),
                            ("ema_sparse_checks", "ema", {"check_every_seconds": 600}),
                            ("delay", "index", {"delay_seconds": 600})):
        model, _, _ = build(_one_account(kind, **liq))
        runs[name] = simulate(model, seed=11, n_paths=2000, chunk_size=2000, keep_unit_paths=True).unit_paths
    assert (runs["index"].liq_events > 0).mean() > 0.1 and (runs["ema"].liq_events > 0).mean() > 0.1
    assert runs["index"].artefacts.sum() == 0 and runs["ema"].artefacts.sum() == 0
    assert runs["ema_sparse_checks"].artefacts.sum() > 0 and runs["delay"].artefacts.sum() > 0


def test_over_liquidation_full_vs_minimal():
    """A full close over-liquidates; the buffer path with zero buffer closes the minimum (to 2^-14)."""
    full, _, _ = build(_one_account("index"))
    minimal, _, _ = build(_one_account("index", mode="buffer", buffer=0.0))
    a = simulate(full, seed=12, n_paths=1000, chunk_size=1000, keep_unit_paths=True).unit_paths
    b = simulate(minimal, seed=12, n_paths=1000, chunk_size=1000, keep_unit_paths=True).unit_paths
    hit = a.liq_events[:, 0] > 0
    assert hit.mean() > 0.1
    share = a.over_notional[hit, 0] / a.liq_notional[hit, 0]
    assert np.all((share >= 0) & (share <= 1 + 1e-12))
    assert np.median(share) > 0.5  # a full close takes most of a position that a partial cut would have saved
    first = (a.liq_step == b.liq_step)[:, 0] & hit & (b.liq_events[:, 0] == 1)
    assert first.any()
    # The minimal close's over-liquidation is bisection rounding only: <= 2^-14 of the position.
    assert np.all(b.over_notional[first, 0] <= 2.0**-14 * 300 * 3500 * 2)


def test_circuit_breaker_halts_liquidations():
    cfg = _one_account("index")
    cfg["guardrails"] = {"circuit_breaker": {"move": 1e-9, "window_seconds": 60, "halt_seconds": 3600}}
    model, _, _ = build(cfg)
    u = simulate(model, seed=13, n_paths=500, chunk_size=500, keep_unit_paths=True).unit_paths
    # Every move trips it and each halt lasts an hour: it fires 12 times and nothing is ever liquidated.
    assert np.all(u.venue_breaker_fires == 12) and u.liq_events.sum() == 0


def test_depth_decay_raises_slippage_on_the_same_paths():
    base, _, _ = build(_one_account("index"))
    decay, _, _ = build(_one_account("index", depth_vol_elasticity=2.0, depth_floor=0.05))
    a = simulate(base, seed=14, n_paths=1000, chunk_size=1000, keep_unit_paths=True).unit_paths
    b = simulate(decay, seed=14, n_paths=1000, chunk_size=1000, keep_unit_paths=True).unit_paths
    np.testing.assert_array_equal(a.liq_step, b.liq_step)  # triggers do not depend on depth
    hit = a.liq_events[:, 0] > 0
    assert np.all(b.slippage[hit, 0] >= a.slippage[hit, 0] * (1 - 1e-12))
    assert (b.slippage[hit, 0] > a.slippage[hit, 0] * 1.01).mean() > 0.2


def test_entry_guardrails_cap_leverage_and_open_interest():
    from perpjax.config import build_model, load_config

    base, labels, _ = build_model(load_config(None))
    model, _, res = build_model(load_config(None, ["guardrails.enforce_initial_margin=true",
                                                   "guardrails.open_interest_limit={BTC: 1.5e7}"]))
    fired = res["guardrails_fired"]
    s0, s1 = np.asarray(base.book.size, np.float64), np.asarray(model.book.size, np.float64)
    entry, coll = np.asarray(base.book.entry, np.float64), np.asarray(base.book.collateral, np.float64)
    def im(u, k=1.0):
        return float(np.sum(base.ladder.initial(np.abs(s0[u] * k) * entry[u])))

    for u, name in enumerate(labels.unit):
        k = fired["initial_margin_cuts"].get(name)
        if k is None:
            assert im(u) <= coll[u]
        else:  # the largest size within the cap (initial margin jumps at tier floors)
            assert im(u, k) <= coll[u] < im(u, k * (1 + 1e-6))
    cut_units = set(fired["initial_margin_cuts"])
    assert "sol_degen_50x:SOL" in cut_units and "market_maker" not in cut_units
    long_btc = s1[:, 0] > 0
    assert np.sum(s1[long_btc, 0] * entry[long_btc, 0]) == pytest.approx(1.5e7, rel=1e-6)  # float32 book
    assert "BTC:long" in fired["open_interest_cuts"]


def test_backstop_and_throttle_flags_follow_their_values():
    """``backstop`` / ``throttled`` are static but derived from ``backstop_ratio`` / ``throttle``: a
    ratio alone turns the backstop on, and an explicit flag that disagrees is rejected by name."""
    depth = DepthModel(jnp.asarray([1e6]), jnp.asarray([1e-4]))
    liq = Liquidation(depth, jnp.asarray(0.005), backstop_ratio=jnp.asarray(0.5), throttle=jnp.asarray(1e6))
    assert liq.backstop is True and liq.throttled is True and not liq.full_only
    off = Liquidation(depth, jnp.asarray(0.005))
    assert off.backstop is False and off.throttled is False and off.full_only
    assert Liquidation(depth, jnp.asarray(0.005), backstop_ratio=jnp.asarray(0.5), backstop=True).backstop
    with pytest.raises(ValueError, match="^backstop: .*backstop_ratio"):
        Liquidation(depth, jnp.asarray(0.005), backstop_ratio=jnp.asarray(0.5), backstop=False)
    with pytest.raises(ValueError, match="^throttled: .*throttle"):
        Liquidation(depth, jnp.asarray(0.005), throttled=True)
