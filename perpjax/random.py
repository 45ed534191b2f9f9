"""Counter-based random numbers, keyed by position, written as plain array ops.

``jax.random`` lowers each draw to a rolled loop on CPU, which stops XLA from
fusing the simulation step (measured: ~6x slower step). This module computes
the same Threefry-2x32 (20 rounds; Salmon et al. 2011, the generator behind
``jax.random``'s default) unrolled in ``uint32`` arithmetic, so a whole step -
draws included - fuses into a few loops on CPU and one kernel on GPU.

A draw is addressed by (path key, step t, stream, index): the path key is the
hash of (seed, path index); the counter is (t, stream << 24 | index). Results
never depend on chunking, batch shape or device count.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)

# Stream ids: each component draws from its own stream of counters.
PRICE, STUDENT, STUDENT_ACCEPT, JUMP_COUNT, JUMP_SIZE, BASIS, BRIDGE, REGIME = range(8)
# Innovations drawn once per bar (keyed by the bar index, ``paths.PriceModel.bar_steps`` > 1) and the
# bootstrap index of filtered historical simulation (per step, or per bar).
BAR_PRICE, BAR_STUDENT, BAR_STUDENT_ACCEPT, RESAMPLE, BAR_RESAMPLE = range(8, 13)


def _rotl(x, r):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds; all arguments uint32 arrays (broadcast)."""
    k2 = k0 ^ k1 ^ _PARITY
    ks = (k0, k1, k2)
    x0 = x0 + k0
    x1 = x1 + k1
    for block in range(5):
        for r in _ROT[block % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def seed_key(seed: int):
    """Two uint32 words from a non-negative integer seed (< 2**64)."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be an integer in [0, 2**64), got {seed}")
    return jnp.asarray([seed >> 32, seed & 0xFFFFFFFF], dtype=jnp.uint32)


def path_key(key, path_index, high=0):
    """Key of path ``path_index + high * 2**32``: the hash of (seed key, (low word, high word)).

    Path indices are 64-bit: the low and high 32-bit words are the two counter words of one
    Threefry block, so paths below 2**32 (``high = 0``) keep the keys they always had."""
    i = jnp.asarray(path_index, jnp.uint32)
    a, b = threefry2x32(key[0], key[1], i, jnp.broadcast_to(jnp.asarray(high, jnp.uint32), i.shape))
    return jnp.stack([a, b], axis=-1)


def index_words(start: int) -> np.ndarray:
    """A non-negative path index < 2**64 as its (low, high) uint32 words: the traced ``start`` of a chunk."""
    start = int(start)
    if not 0 <= start < 2**64:
        raise ValueError(f"path index: must be in [0, 2**64), got {start}")
    return np.array([start & 0xFFFFFFFF, start >> 32], np.uint32)


def path_keys(key, start, count: int):
    """Keys of paths ``start .. start + count - 1``; ``start``: a uint32 scalar (high word 0) or the
    (low, high) words of ``index_words``. The 64-bit index carries from the low into the high word."""
    start = jnp.asarray(start, jnp.uint32)
    lo0, hi0 = (start, jnp.uint32(0)) if start.ndim == 0 else (start[0], start[1])
    lo = lo0 + jnp.arange(count, dtype=jnp.uint32)  # wraps modulo 2**32
    hi = hi0 + (lo < lo0).astype(jnp.uint32)  # the carry of the wrap
    return path_key(key, lo, hi)


def _words(pkey, t, counters: np.ndarray):
    """Threefry of (t, c) for each static counter word c: two uint32 arrays, shape counters.shape."""
    c = jnp.asarray(counters, jnp.uint32)
    tt = jnp.broadcast_to(jnp.asarray(t, jnp.uint32), c.shape)
    return threefry2x32(pkey[0], pkey[1], tt, c)


def _stream_plan(spec):
    """Static plan for ``spec`` = ((stream, n, kind), ...): counter words and, per draw, its
    index into concat([a, b]) of all counters (the layout ``bits`` uses per stream)."""
    counters, take = [], []
    total = sum((n + 1) // 2 for _, n, _ in spec)
    off = 0
    for stream, n, _ in spec:
        m = (n + 1) // 2
        counters.append((np.uint32(stream) << np.uint32(24)) + np.arange(m, dtype=np.uint32))
        take.append(np.concatenate([off + np.arange(m), total + off + np.arange(m)])[:n])
        off += m
    return np.concatenate(counters), np.concatenate(take)


def _to_normal(u):
    return math.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * u - 1.0)


def _unit(w, extra, dtype):
    """Uniform in (0, 1) from a word ``w`` (and, for float64, a shadow word ``extra``).

    float32: 23 random bits, (k + 1/2) 2^-23. float64: the same 23 bits followed by 29 from the
    shadow stream (counter + 64 << 24), so a float64 run refines the float32 run path by path."""
    k = w >> np.uint32(9)
    if jnp.dtype(dtype) == jnp.float64:
        return (k.astype(jnp.float64) * 2.0**29 + (extra >> np.uint32(3)).astype(jnp.float64) + 0.5) * 2.0**-52
    return (k.astype(jnp.float32) + 0.5) * np.float32(2.0**-23)


_SHADOW = np.uint32(64) << np.uint32(24)


def _rows_threefry(k0, k1, t, counters, dtype):
    """Threefry words (and float64 shadow words) of ``counters`` for B paths: (m, B) each."""
    c = jnp.asarray(counters, jnp.uint32)[:, None]
    tt = jnp.asarray(t, jnp.uint32)
    a, b = threefry2x32(k0[None, :], k1[None, :], tt, c)
    if jnp.dtype(dtype) != jnp.float64:
        return (a, None), (b, None)
    sa, sb = threefry2x32(k0[None, :], k1[None, :], tt, c + _SHADOW)
    return (a, sa), (b, sb)


def _draw_rows(k0, k1, t, spec, dtype):
    """``draw`` for B paths with the paths on the last axis: key words ``k0, k1`` (B,), ``t`` () or
    (1, B) -> (sum n, B)."""
    counters, take = _stream_plan(spec)
    m = len(counters)
    halves = _rows_threefry(k0, k1, t, counters, dtype)

    def row(i):
        w, sw = halves[i // m]
        r = i % m
        return w[r:r + 1], None if sw is None else sw[r:r + 1]

    picked = [row(int(i)) for i in take]
    w = jnp.concatenate([x for x, _ in picked])
    extra = None if halves[0][1] is None else jnp.concatenate([x for _, x in picked])
    u = _unit(w, extra, dtype)
    rows, off = [], 0
    for _, n, kind in spec:
        rows.append(_to_normal(u[off:off + n]) if kind == "normal" else u[off:off + n])
        off += n
    return jnp.concatenate(rows)


def _draw_cols(k0, k1, t, spec, dtype):
    """``draw`` for B paths, paths first, (B, sum n): the words are computed paths-last in four
    blocks (Threefry half x normal/uniform), each block is converted on its own (no concatenation
    inside the heavy loop) and placed by an exact 0/1 product (full precision)."""
    counters, take = _stream_plan(spec)
    m, n = len(counters), len(take)
    normal = np.concatenate([np.full(k, kind == "normal") for _, k, kind in spec])
    row_normal = np.zeros(m, bool)
    row_normal[take % m] = normal  # a counter serves one stream, so one kind
    order = np.concatenate([np.nonzero(row_normal)[0], np.nonzero(~row_normal)[0]])
    at = np.empty(m, int)
    at[order] = np.arange(m)
    n_normal_rows = int(row_normal.sum())
    out = jnp.zeros((k0.shape[0], n), dtype)
    for half, (w, sw) in enumerate(_rows_threefry(k0, k1, t, counters[order], dtype)):
        for is_normal, lo, hi in ((True, 0, n_normal_rows), (False, n_normal_rows, m)):
            place = np.zeros((hi - lo, n), dtype)
            for j, i in enumerate(take):
                if i // m == half and row_normal[i % m] == is_normal:
                    place[at[i % m] - lo, j] = 1.0
            if not place.any():
                continue
            u = _unit(w[lo:hi], None if sw is None else sw[lo:hi], dtype)
            v = _to_normal(u) if is_normal else u
            out = out + jax.lax.dot_general(v, jnp.asarray(place), (((0,), (0,)), ((), ())),
                                            precision=jax.lax.Precision.HIGHEST)
    return out


# Up to this many draws per step, ``_draw_cols``; more, ``_draw_rows`` and one transpose (XLA:CPU,
# measured: 1-account workload, 4 draws, 50 vs 88 ns per path-step; default book, 18 draws, 195 vs
# 235 ns). Both give the same numbers bit for bit.
PLACE_MAX_DRAWS = 8


def draw(pkey, t, spec, dtype=jnp.float32):
    """All draws of one step in one vectorised pass: a flat (sum n,) array.

    ``spec`` is a static tuple of (stream, n, kind), kind "uniform" or
    "normal". Entry j of the result equals ``uniform``/``normal`` of that
    stream; use ``split`` to cut it.

    Under ``vmap`` (the engine's chunk of paths) the words are computed with the
    paths on the last axis (a ``custom_vmap`` rule): the Threefry rounds then run
    along contiguous rows of paths and vectorise, where vmap's paths-first layout
    (B, 18) did not and made XLA:CPU evaluate each Threefry twice (once per output
    word). Same numbers; default path-step 290 -> ~195 ns (2-core CPU,
    ``benchmarks/RESULTS.md``).
    """
    if not spec:  # e.g. a replayed market with a static basis: nothing random this step
        return jnp.zeros(jnp.shape(pkey)[:-1] + (0,), dtype)

    @custom_vmap
    def one(pkey, t):
        return _draw_rows(pkey[0:1], pkey[1:2], t, spec, dtype)[:, 0]

    @one.def_vmap
    def _rule(axis_size, in_batched, pkey, t):
        key_b, t_b = in_batched
        k0, k1 = (pkey[:, 0], pkey[:, 1]) if key_b else (jnp.broadcast_to(pkey[0], (axis_size,)),
                                                           jnp.broadcast_to(pkey[1], (axis_size,)))
        tt = t[None, :] if t_b else t
        n = sum(k for _, k, _ in spec)
        if n <= PLACE_MAX_DRAWS:
            return _draw_cols(k0, k1, tt, spec, dtype), True
        return _draw_rows(k0, k1, tt, spec, dtype).T, True

    return one(pkey, t)


def split(flat, spec) -> dict:
    """Cut a ``draw`` result into {stream: (n,) array}."""
    out, off = {}, 0
    for stream, n, _ in spec:
        out[stream] = flat[..., off:off + n]
        off += n
    return out


def bits(pkey, t, stream: int, n: int):
    """``n`` uint32 words for (path key, step t, stream); shape (n,)."""
    counters, take = _stream_plan(((stream, n, "uniform"),))
    a, b = _words(pkey, t, counters)
    return jnp.concatenate([a, b])[take]


def uniform(pkey, t, stream: int, n: int, dtype=jnp.float32):
    """Uniforms in the open interval (0, 1), shape (n,).

    float32: 23 random bits, values (k + 1/2) 2^-23. float64: the same 23 bits
    followed by 29 more from a shadow stream, so a float64 run draws the
    float32 run's numbers refined (they differ by < 2^-24) and the two can be
    compared path by path.
    """
    return draw(pkey, t, ((stream, n, "uniform"),), dtype)


def normal(pkey, t, stream: int, n: int, dtype=jnp.float32):
    """Standard normals by inversion, ``sqrt(2) erfinv(2u - 1)``, shape (n,).

    One uniform per normal and no pairing, so each element is independent of
    its neighbours (Box-Muller's sin/cos cost ~3x more on CPU, measured).
    ``2u - 1`` is exact in float32 for our 23-bit uniforms; the tails reach
    |z| = 5.3 in float32 (P(|Z| > 5.3) = 1.2e-7) and 8.2 in float64.
    """
    return draw(pkey, t, ((stream, n, "normal"),), dtype)


def gamma_dc(z, u, d, c):
    """One Gamma(d + 1/3, 1) draw from candidate normals ``z`` and uniforms ``u`` (Marsaglia & Tsang 2000,
    "A simple method for generating gamma variables", ACM TOMS 26(3)), with ``d = shape - 1/3`` and
    ``c = 1 / sqrt(9 d)`` given, so the shape can be a traced value (``innovations.StudentLaw``).

    The candidates are tried at once and the first accepted is returned. Acceptance is >= 0.95 per
    candidate for shape >= 1, so 8 candidates all fail with probability < 4e-11; then the last
    candidate is used (a bias below 1e-10)."""
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (jnp.log(u) < 0.5 * z * z + d - d * v + d * jnp.log(jnp.where(v > 0, v, 1.0)))
    first = jnp.argmax(jnp.concatenate([ok[:-1], jnp.ones((1,), bool)]))
    return d * jnp.take(v, first)
