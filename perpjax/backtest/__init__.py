"""Backtesting the model's forecasts against what happened (``perpjax backtest``)."""

from .stats import brier_score as brier_score
from .stats import christoffersen_independence as christoffersen_independence
from .stats import coverage_test as coverage_test
from .stats import kupiec_pof as kupiec_pof
from .stats import poisson_binomial_pmf as poisson_binomial_pmf
from .stats import reliability_table as reliability_table
from .stats import traffic_light as traffic_light
