"""perpjax: Monte Carlo risk engine for perpetual-futures venues, on JAX."""

import os as _os

# XLA:CPU hands small reductions to YNNPACK "library fusions", which run the
# simulation step ~4x slower (benchmarks/RESULTS.md). Turn them off unless the
# user chose otherwise; this must happen before JAX creates its CPU backend.
_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
if _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=").strip()

from .runtime import enable_compilation_cache as _enable_compilation_cache
from .version import __version__ as __version__

_enable_compilation_cache()

from .api import Result as Result
from .api import run as run
from .config import build_model as build_model
from .config import load_config as load_config
from .engine import Outcome as Outcome
from .engine import RiskModel as RiskModel
from .engine import simulate as simulate
from .errors import ConfigError as ConfigError
from .report import load as load
