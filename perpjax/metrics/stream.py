"""Statistics of per-path columns, in memory or streamed over a stored run's chunk files.

One mechanism for both: a ``PathTable`` yields a run's per-path columns chunk by chunk (an in-memory
``Outcome`` is one chunk; a ``store.StoredOutcome`` one chunk per file, read one at a time), and
every statistic here makes a few passes over it with memory bounded by a chunk. Order statistics are
exact (radix selection on the floats' bits), so quantiles and VaR are the same numbers in both modes,
equal to ``np.quantile``'s bit for bit; means and SDs equal numpy's on one chunk and differ from them
only in float rounding on several (float64 sums of the chunks' sums, the chunks' M2 combined by Chan et al.).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


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


def keys_of(specs) -> set:
    """Every column the ``PerPath`` specs read."""
    return {k for sp in specs for k in sp.keys}


def moments(table: PathTable, specs: dict) -> dict:
    """name -> (n, mean, sd with ddof 1 or None) of each ``PerPath`` in ``specs``, in one pass.

    One chunk: numpy's own ``x.mean()`` / ``x.std(ddof=1)`` (numpy scalars, so later arithmetic rounds as
    it did on the array). Several: mean = (exact sum of the chunks' float64 sums) / n, and M2 combined
    from the chunks' (Chan, Golub and LeVeque 1979)."""
    single = table.n_chunks == 1
    parts = {k: [] for k in specs}
    for chunk in table.chunks(keys_of(specs.values())):
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
    return {name: combine_moments(p, specs[name].sd) for name, p in parts.items()}


def combine_moments(parts, want_sd):
    """(n, mean, sd with ddof 1 or None) from chunks' (n, float64 sum, M2) parts (Chan, Golub and LeVeque)."""
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
        for chunk in table.chunks(keys_of(active.values())):
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


def inverted_cdf_rank(n: int, q: float) -> int:
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
            r = inverted_cdf_rank(n, w.q)
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
