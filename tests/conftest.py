import gc

import jax
import pytest

import perpjax  # noqa: F401  (sets XLA flags before the backend starts)

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: statistical tests with many paths")


MAPS = "/proc/self/maps"
MAPS_BEFORE_CLEAR = 40_000
"""Linux's vm.max_map_count is 65,530 by default; one compiled CPU executable keeps ~400-600 memory
mappings (its JIT-linked code) while cached. Clearing at 40,000 leaves room for the largest module's
compiles (a few thousand mappings) before the next check."""


def _memory_maps() -> int | None:
    try:
        with open(MAPS) as f:
            return sum(1 for _ in f)
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_kernels():
    """Drop JAX's in-memory executables after a test module once the process holds many. Kept all at
    once, the suite's few hundred kernels would reach vm.max_map_count and XLA would abort the process
    (seen at ~380 tests). Clearing after every module instead cost each later module a re-trace and a
    persistent-cache load per kernel (1.8 s against 0.06 s in memory for a small default-book run),
    so the caches go only when the mappings pass ``MAPS_BEFORE_CLEAR`` (or always, where /proc is
    absent); kernels needed again come back from the persistent compilation cache."""
    yield
    n = _memory_maps()
    if n is None or n > MAPS_BEFORE_CLEAR:
        jax.clear_caches()
        gc.collect()
