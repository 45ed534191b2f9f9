"""Risk sensitivities: d(venue metric)/d(parameter), pathwise through the relaxed engine, each checked
against a central finite difference of the hard engine on the same paths (common random numbers).

Metrics (``estimates.METRICS``): bad-debt mean and ES 99 %, P(any liquidation), expected units
liquidated, P(insurance fund depleted). Parameters (``params.PARAMS``): vol, correlation, mmr,
depth, spread, fee, fund, each one scalar ``x`` reported per unit step ``x = 0.01`` (+1 % relative,
or +0.01 of correlation).

Method. The relaxed engine (``calibrate.relaxed``: the hard engine's market on the same random
numbers, a soft first passage of equity below maintenance with hazard
``sigmoid(-(equity - MM) / (tau notional))`` at each check) is differentiated path by path
(``pathwise``: by default forward mode on its sparse form, where a step's soft liquidation runs only
on the paths where it weighs, with the market parameters' tangents carried through the market and the
venue parameters' only through the liquidations; ``--ad reverse``: the dense engine in reverse mode),
and the metrics' gradients and standard errors follow from the per-path Jacobians (``estimates``).
The hard engine is run at ``x +- h`` per parameter on the same seed (``hard``); per-path central
differences give the finite difference, its standard error, and the paired z of the disagreement.

Temperature. ``tau`` trades bias for variance: the relaxed expectation tends to the hard one as
``tau -> 0``, but a unit at margin distance ``d`` (fraction of notional) carries a spurious hazard
``sigmoid(-d / tau)`` at every check, summed over the horizon's checks; while the pathwise variance of a
probability's gradient grows like ``1 / tau`` (only paths within a few ``tau`` of the threshold
contribute, so at small ``tau`` few paths carry the estimate and its SE is itself unreliable).
Measured on a two-asset book at 5-minute checks (``tests/test_sensitivities.py``, 1,500 paths):
``tau = 1e-3`` biases d P(liq) / d MMR up by ~25 % (~3 SE), ``1e-4`` leaves a few paths carrying
d P(liq) / d vol (half the finite difference, ~3 SE off), ``3e-4`` agrees everywhere. ``TEMPERATURE =
3e-4`` agrees with the finite differences on the default config and ``benchmarks/workload.yaml``
too (``benchmarks/RESULTS.md``, "Sensitivities (issue 15)"); ``--temperature`` changes it.

Scope. Where the relaxed engine refuses the model (``calibrate.check_calibratable``: ADL,
backstop, delay, throttle, cooldown, bridge, depth decay, circuit breaker, cascade feedback, funding
crowding) every row is a finite difference only, and says why (``note``).
"""

from .estimates import METRICS as METRICS
from .job import COLUMNS as COLUMNS
from .job import TEMPERATURE as TEMPERATURE
from .job import Setup as Setup
from .job import prepare as prepare
from .job import run_sensitivities as run_sensitivities
from .params import DEFAULT_WRT as DEFAULT_WRT
from .params import PARAMS as PARAMS
from .params import apply as apply
from .params import parse_bumps as parse_bumps
from .params import parse_wrt as parse_wrt
from .pathwise import path_grads as path_grads
