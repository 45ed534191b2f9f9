"""The simulation engine: one jitted kernel over a chunk of paths, and a chunk driver.

Pipeline per step (DOMAIN.md): price paths -> oracle -> basis -> mark -> funding -> margin check
(tiered, cross) -> liquidation -> record. Modules:

* ``model``: ``RiskModel`` (everything one simulation needs, cross-checked) and a step's draws
  (``draw_spec``, ``draw``);
* ``state``: the carry (``MarketState`` shared with the relaxed engine and ``price_returns``,
  ``BookState``, ``State``), ``market_step``, ``margin``, ``initial_state``, ``initial_equity``;
* ``step``: the per-step orchestrator; ``kernel``: ``simulate_path``, ``simulate_chunk``,
  ``price_returns``; ``driver``: ``simulate`` (chunks, checkpoint, host reductions);
* ``outputs``: every per-unit and per-path output declared once (``OUTPUTS``), and ``Outcome``.

The book's position layout is ``perpjax.layout`` (``Positions``, ``positions``), re-exported here.
"""

from ..layout import Positions as Positions
from ..layout import positions as positions
from .driver import auto_chunk_size as auto_chunk_size
from .driver import carry_bytes_per_path as carry_bytes_per_path
from .driver import simulate as simulate
from .kernel import price_returns as price_returns
from .kernel import simulate_chunk as simulate_chunk
from .kernel import simulate_path as simulate_path
from .model import RiskModel as RiskModel
from .model import draw as draw
from .model import draw_spec as draw_spec
from .outputs import OUTPUTS as OUTPUTS
from .outputs import Outcome as Outcome
from .outputs import PathOutcome as PathOutcome
from .outputs import UnitAccounts as UnitAccounts
from .outputs import UnitPaths as UnitPaths
from .outputs import VenueAccounts as VenueAccounts
from .state import BookState as BookState
from .state import MarketState as MarketState
from .state import MarketStep as MarketStep
from .state import State as State
from .state import initial_equity as initial_equity
from .state import initial_state as initial_state
from .state import margin as margin
from .state import market_step as market_step
from .step import step as step
