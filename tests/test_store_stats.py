"""Statistics of per-path columns streamed over chunks (``metrics.PathTable``): exact order statistics,
quantiles equal to ``np.quantile`` bit for bit, VaR / ES against their defining formulas, and a run stored
in chunk files summarised as the same run in memory."""

import math

import numpy as np
import pytest

from perpjax import metrics as M
from perpjax.metrics import stream


class Chunked:
    """In-memory chunks behind a stored run's interface (``read_chunks``, ``n_chunks``, ``chunk_rows``)."""

    def __init__(self, x, sizes):
        edges = np.cumsum([0, *sizes])
        assert edges[-1] == len(x)
        self.parts = [x[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
        self.n_chunks, self.chunk_rows, self.n_paths = len(sizes), max(sizes), len(x)

    def read_chunks(self, keys):
        for p in self.parts:
            yield {k: p for k in keys}


def _sizes(rng, n, k):
    cut = np.sort(rng.choice(np.arange(1, n), k - 1, replace=False))
    return np.diff([0, *cut, n]).tolist()


def _data(rng, n):
    """Columns that stress a selection: ties, heavy tails both ways, signed zeros, all equal, ints, float32."""
    zero_heavy = np.where(rng.random(n) < 0.97, 0.0, rng.lognormal(3.0, 2.0, n))  # bad debt's shape
    return {
        "ties": rng.integers(0, 5, n).astype(np.float64),
        "zero_heavy": zero_heavy,
        "cauchy": rng.standard_cauchy(n) * 1e3,
        "pareto": rng.pareto(0.7, n),
        "signed_zeros": np.where(rng.random(n) < 0.5, -0.0, 0.0) - np.where(rng.random(n) < 0.1, 1.0, 0.0),
        "all_equal": np.full(n, 3.25),
        "ints": rng.integers(0, 3, n).astype(np.int64),
        "float32": rng.standard_normal(n).astype(np.float32),
        "tiny_range": 1.0 + rng.integers(0, 3, n) * np.finfo(np.float64).eps,  # differ in the last bits
    }


QS = (0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


@pytest.mark.parametrize("budget", [16, None])  # 16: many radix passes and narrow bins; None: a chunk or more
def test_quantiles_equal_numpy_bit_for_bit(monkeypatch, budget):
    rng = np.random.default_rng(11)
    n = 5003
    if budget:
        monkeypatch.setattr(stream, "MIN_BUDGET", budget)
    for name, x in _data(rng, n).items():
        for table in (M.PathTable({"x": x}), M.PathTable(Chunked(x, _sizes(rng, n, 7)))):
            want = {f"{m}_{q}": M.Quantile(M.per_path("x"), q, m) for q in QS for m in ("linear", "inverted_cdf")}
            got = M.quantiles(table, want, n)
            for key, w in want.items():
                ref = float(np.quantile(x, w.q, method=w.method))
                assert got[key] == ref, (name, key, got[key], ref)


def test_every_order_statistic_of_a_chunked_column(monkeypatch):
    """All ranks of a small column with many ties across chunks, through bins of at most 4 values."""
    monkeypatch.setattr(stream, "MIN_BUDGET", 4)
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_t(1.5, 400), 1)  # heavy tails, ties from rounding
    table = M.PathTable(Chunked(x, _sizes(rng, 400, 9)))
    got = M.order_statistics(table, {"x": M.per_path("x")}, {"x": range(400)})["x"]
    np.testing.assert_array_equal([got[r] for r in range(400)], np.sort(x))


def test_var_es_against_the_direct_formula():
    """VaR = x_(ceil(n alpha)) (1-based), ES = VaR + sum (x - VaR)^+ / (n (1 - alpha)) (Rockafellar-Uryasev on the
    empirical distribution) summed exactly (math.fsum), the VaR SE from the order statistics at
    n alpha -/+ z sqrt(n alpha (1 - alpha)); streamed over chunks and on the array alike."""
    rng = np.random.default_rng(3)
    n = 10_007  # n alpha never an integer below: the rank is unambiguous
    x = np.where(rng.random(n) < 0.9, 0.0, rng.pareto(1.5, n) * 100.0)
    xs = np.sort(x)
    chunked = M.PathTable(Chunked(x, _sizes(rng, n, 6)))
    for a in M.LEVELS:
        var = xs[math.ceil(n * a) - 1]
        es = var + math.fsum(np.maximum(xs - var, 0.0)) / (n * (1 - a))
        h = M.Z95 * math.sqrt(n * a * (1 - a))
        var_se = (xs[min(math.ceil(n * a + h), n - 1)] - xs[max(math.floor(n * a - h), 0)]) / (2 * M.Z95)
        y = var + np.maximum(xs - var, 0.0) / (1 - a)
        es_se = math.sqrt(math.fsum((y - math.fsum(y) / n) ** 2) / (n - 1) / n)
        assert (xs > var).sum() >= M.MIN_TAIL_PATHS  # every level has its SEs
        for got in (M.var_es(x, a), M.var_es((chunked, M.per_path("x")), a)):
            assert got[0] == var and got[2] == var_se  # order statistics: exact
            assert got[1] == pytest.approx(es, rel=1e-13, abs=0)  # sums: float rounding only (n eps ~ 2e-12)
            assert got[3] == pytest.approx(es_se, rel=1e-11, abs=0)


def test_moments_one_chunk_is_numpys_and_chunks_agree_to_rounding():
    rng = np.random.default_rng(8)
    n = 9001
    x = rng.lognormal(0.0, 2.0, n)
    spec = {"x": M.per_path("x", sd=True), "p": M.per_path("x", fn=lambda v: v > 1.0)}
    one = M.moments(M.PathTable({"x": x}), spec)
    assert one["x"][1] == x.mean() and one["x"][2] == x.std(ddof=1) and one["p"][1] == (x > 1.0).mean()
    many = M.moments(M.PathTable(Chunked(x, _sizes(rng, n, 13))), spec)
    assert many["p"][1] == (x > 1.0).mean()  # a count over n: exact
    # Relative rounding of a float64 sum of n terms is below n eps = 2e-12; observed ~1e-16.
    assert many["x"][1] == pytest.approx(math.fsum(x) / n, rel=1e-14, abs=0)
    assert many["x"][2] == pytest.approx(x.std(ddof=1), rel=1e-13, abs=0)


def _summaries(tmp_path, scenario, paths):
    from perpjax import config as C
    from perpjax.api import run

    if scenario is None:
        cfg = C.load_config(None, ["time.horizon_seconds=1800", f"chunk_size={-(-paths // 6)}"])
    else:  # its own horizon (the shock ends at 3 h)
        cfg = C.apply_scenario(C.load_config(None, [f"chunk_size={-(-paths // 6)}"]), scenario)
    mem = run(cfg, paths=paths, seed=4)
    stored = run(cfg, paths=paths, seed=4, out=tmp_path / "run")
    return mem.summary, stored.summary, stored


EXACT = ("_var_", "_p50", "_p90", "_p99", "_p99_9", "_max")  # order statistics: the same bit for bit
TIMING = {"path_steps_per_second", "wall_seconds"}


def assert_summaries_agree(stored: dict, mem: dict, rel: float = 1e-12) -> None:
    """A stored run's summary against the same run's in memory: the same keys; quantiles, VaR (and their
    SEs: differences of order statistics) and everything not a float equal; means, SDs and ES within
    ``rel`` (float64 sums of the chunks' sums: rounding only, ~ n eps = 1e-13 for 500 paths)."""
    assert set(stored) - TIMING == set(mem) - TIMING
    for k, v in mem.items():
        if k in TIMING:
            continue
        w = stored[k]
        if isinstance(v, float) and not any(e in k for e in EXACT):
            assert w == pytest.approx(v, rel=rel, abs=1e-300), k
        else:
            assert w == v, k


@pytest.mark.parametrize("scenario, paths", [(None, 500), ("crash_20pct_1h", 240)], ids=["default", "cascade"])
def test_a_stored_run_summarises_as_in_memory(tmp_path, scenario, paths):
    """Six chunk files vs one array (``assert_summaries_agree``), on the default book and on a cascade."""
    mem, stored, res = _summaries(tmp_path, scenario, paths)
    assert res.outcome.n_chunks == 6
    if scenario is not None:
        assert "cascade_rounds_p99" in mem
    assert_summaries_agree(stored, mem)


def test_no_standard_error_below_the_minimum_of_tail_paths():
    """An SE that rests on fewer than ``MIN_TAIL_PATHS`` paths beyond the VaR is NaN (not the 0 the formula
    gives when no path lies beyond), with the count; at the minimum it is given. Streamed the same."""
    rng = np.random.default_rng(2)
    n, a = 2000, 0.99
    for beyond in (0, M.MIN_TAIL_PATHS - 1, M.MIN_TAIL_PATHS):
        x = np.zeros(n)
        x[:beyond] = rng.uniform(1.0, 2.0, beyond)  # 99 % VaR is 0 (20 paths would lie beyond a continuous one)
        rng.shuffle(x)
        chunked = M.PathTable(Chunked(x, _sizes(rng, n, 4)))
        tails = [M.var_es_table(t, {"x": M.per_path("x")}, (a,), n)["x", a]
                 for t in (M.PathTable({"x": x}), chunked)]
        for t in tails:
            assert t.var == 0.0 and t.beyond == beyond
            assert t.es == pytest.approx(x.sum() / (n * (1 - a)), rel=1e-12)
            if beyond < M.MIN_TAIL_PATHS:
                assert math.isnan(t.var_se) and math.isnan(t.es_se), beyond
            else:
                assert t.es_se > 0 and t.var_se == 0.0  # the VaR's order-statistic interval is all zeros
        assert math.isnan(M.var_es(x, a)[3]) == (beyond < M.MIN_TAIL_PATHS)
