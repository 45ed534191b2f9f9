"""Counter-based draws: the generator is JAX's Threefry-2x32, and batching never changes a number."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from perpjax import random as R


def test_threefry_matches_jax():
    key = jnp.asarray([0x12345678, 0x9ABCDEF0], jnp.uint32)
    x = jnp.arange(64, dtype=jnp.uint32) * np.uint32(2654435761)
    ref = np.asarray(threefry_2x32(key, x))  # JAX's own: counts (x0 | x1) halves
    a, b = R.threefry2x32(key[0], key[1], x[:32], x[32:])
    np.testing.assert_array_equal(np.concatenate([np.asarray(a), np.asarray(b)]), ref)


SMALL = ((R.PRICE, 4, "normal"),)  # the benchmark workload's step (placed by 0/1 products under vmap)
LARGE = ((R.PRICE, 4, "normal"), (R.STUDENT, 2, "uniform"), (R.JUMP_COUNT, 4, "uniform"),
         (R.JUMP_SIZE, 4, "normal"), (R.BASIS, 4, "normal"), (R.BRIDGE, 3, "uniform"))  # rows + transpose


@pytest.mark.parametrize("spec", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_batched_draws_equal_single_path_draws(spec, dtype):
    keys = R.path_key(R.seed_key(3), jnp.arange(37, dtype=jnp.uint32))
    t = jnp.int32(11)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: R.draw(k, t, spec, dtype)))(keys))
    single = np.stack([np.asarray(R.draw(k, t, spec, dtype)) for k in keys])
    np.testing.assert_array_equal(batched, single)
    # Batched over steps too (one key): same numbers as step by step.
    ts = jnp.arange(1, 6, dtype=jnp.int32)
    over_t = np.asarray(jax.vmap(lambda s: R.draw(keys[0], s, spec, dtype))(ts))
    np.testing.assert_array_equal(over_t, np.stack([np.asarray(R.draw(keys[0], s, spec, dtype)) for s in ts]))
    # Streams are what they say: uniforms in (0, 1), float64 refines float32 by < 2^-24.
    d = R.split(batched, spec)
    for stream, _, kind in spec:
        if kind == "uniform":
            assert np.all((d[stream] > 0) & (d[stream] < 1))
    if dtype == jnp.float64 and any(k == "uniform" for _, _, k in spec):
        f32 = np.asarray(jax.vmap(lambda k: R.draw(k, t, spec, jnp.float32))(keys))
        u64 = np.concatenate([d[s] for s, _, k in spec if k == "uniform"], axis=-1)
        u32 = np.concatenate([R.split(f32, spec)[s] for s, _, k in spec if k == "uniform"], axis=-1)
        assert np.max(np.abs(u64 - u32)) < 2.0**-24


def test_empty_spec_draws_nothing():
    keys = R.path_key(R.seed_key(3), jnp.arange(4, dtype=jnp.uint32))
    assert R.draw(keys[0], jnp.int32(1), ()).shape == (0,)
    assert jax.vmap(lambda k: R.draw(k, jnp.int32(1), ()))(keys).shape == (4, 0)


def test_path_indices_are_64_bit_and_carry_across_the_word_boundary():
    key = R.seed_key(7)
    # below 2**32 the keys are the ones they always were: the index in the low word, 0 in the high word
    np.testing.assert_array_equal(np.asarray(R.path_keys(key, R.index_words(5), 3)),
                                  np.asarray(R.path_key(key, jnp.arange(5, 8, dtype=jnp.uint32))))
    # a chunk straddling 2**32: the low word wraps and the high word carries
    got = np.asarray(R.path_keys(key, R.index_words(2**32 - 2), 4))
    lo = jnp.asarray([2**32 - 2, 2**32 - 1, 0, 1], jnp.uint32)
    hi = jnp.asarray([0, 0, 1, 1], jnp.uint32)
    np.testing.assert_array_equal(got, np.asarray(R.path_key(key, lo, hi)))
    # path 2**32 is not path 0 (no aliasing), and every key of the straddling chunk is distinct
    assert not np.array_equal(got[2], np.asarray(R.path_key(key, jnp.uint32(0))))
    assert len({tuple(k) for k in got}) == 4
    np.testing.assert_array_equal(R.index_words(2**40 + 3), np.array([3, 2**8], np.uint32))
    with pytest.raises(ValueError, match="2\\*\\*64"):
        R.index_words(2**64)
