import gc

import jax
import pytest

import perpjax  # noqa: F401  (sets XLA flags before the backend starts)

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: statistical tests with many paths")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_kernels():
    """Drop JAX's in-memory executables after each test module. Every CPU executable keeps ~400 memory
    mappings (its JIT-linked code) while cached, and the suite compiles a few hundred kernels: kept all
    at once they reach Linux's vm.max_map_count (65,530) and XLA aborts the process (seen at ~380 tests).
    Kernels a later module needs again come back from the persistent compilation cache."""
    yield
    jax.clear_caches()
    gc.collect()
