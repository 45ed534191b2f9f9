"""Tune maintenance-margin ladders by gradient.

A risk team states what it wants (little bad debt, a bounded probability that the insurance
fund loses more than a budget, little liquidation cost forced on traders, little margin locked
up) and the ladder's maintenance rates are fitted by gradient descent over simulated paths.

Rooms (each module's docstring explains its part of the method):

* ``space``: ``LadderSpace``, what may change and the monotone, bounded parameterisation, and
  ``check_ladder`` (every iterate is a ladder a venue could publish; the rules are ``perpjax.margin``'s);
* ``relaxed``: the relaxed engine (``soft_outcome``): the hard engine's ``market_step``, draws and
  ``MarketState``, with a soft first passage; ``check_calibratable`` (what it models);
* ``objective``: the objective's terms (``objective_terms``), ``objective``, ``make_loss``;
* ``optimise``: ``calibrate`` (optax loop, checkpoint/resume, early stopping) and the chunked
  value-and-gradient;
* ``job``: ``run_calibration``, the CLI job (files, hard-engine evaluation, plots).
"""

from .job import ladder_space as ladder_space
from .job import ladder_table as ladder_table
from .job import run_calibration as run_calibration
from .objective import OBJECTIVE_DEFAULTS as OBJECTIVE_DEFAULTS
from .objective import Terms as Terms
from .objective import make_loss as make_loss
from .objective import objective as objective
from .objective import objective_terms as objective_terms
from .objective import prepared as prepared
from .optimise import DEFAULTS as DEFAULTS
from .optimise import calibrate as calibrate
from .optimise import chunked_value_and_grad as chunked_value_and_grad
from .optimise import optimizer as optimizer
from .relaxed import SoftBook as SoftBook
from .relaxed import SoftOutcome as SoftOutcome
from .relaxed import SoftState as SoftState
from .relaxed import check_calibratable as check_calibratable
from .relaxed import soft_outcome as soft_outcome
from .space import KNOBS as KNOBS
from .space import LadderSpace as LadderSpace
from .space import check_ladder as check_ladder
