"""Risk metrics of a run: the venue summary, the per-unit and per-tier tables, tail statistics with their
Monte Carlo errors, and the streamed statistics of per-path columns they rest on.

Modules, by what they own:

* ``stream``: per-path columns chunk by chunk (``PathTable``) and their moments and exact order
  statistics / quantiles, in memory or over a stored run's chunk files;
* ``tails``: VaR / ES with standard errors, binomial intervals and SEs, and the rule for when an SE
  is not given (``MIN_TAIL_PATHS``);
* ``accounts``: the per-unit table and its roll-up per tier;
* ``venue``: ``summarize``, the venue summary (and the cascade metrics).
"""

from .accounts import account_table as account_table
from .accounts import by_tier as by_tier
from .stream import MIN_BUDGET as MIN_BUDGET
from .stream import PathTable as PathTable
from .stream import PerPath as PerPath
from .stream import Quantile as Quantile
from .stream import moments as moments
from .stream import order_statistics as order_statistics
from .stream import per_path as per_path
from .stream import quantiles as quantiles
from .tails import LEVELS as LEVELS
from .tails import MIN_TAIL_PATHS as MIN_TAIL_PATHS
from .tails import Z95 as Z95
from .tails import Tail as Tail
from .tails import level_key as level_key
from .tails import missing_se as missing_se
from .tails import var_es as var_es
from .tails import var_es_table as var_es_table
from .tails import wilson as wilson
from .venue import MEANS as MEANS
from .venue import TAILS as TAILS
from .venue import cascade_summary as cascade_summary
from .venue import summarize as summarize
