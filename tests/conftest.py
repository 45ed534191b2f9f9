import jax

import perpjax  # noqa: F401  (sets XLA flags before the backend starts)

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: statistical tests with many paths")
