"""Parameter sweeps in one compile on common random numbers (``perpjax sweep``).

``sets``: the parameter sets (grid product or table rows) validated up front; ``batch``: sets grouped by the
model's compiled structure, each group one kernel batched over its sets; ``table``: the tidy table with SEs
and differences on common random numbers; ``plots``: a PNG per metric; ``run``: ``run_sweep``.

Example::

    from perpjax.config import load_config
    from perpjax.sweep import build_sets, parse_grid, run_sweep, set_texts

    base = load_config("benchmarks/workload.yaml")
    sets = build_sets(base, set_texts(parse_grid(["assets.0.vol=0.5,0.6,0.7"])))
    sw = run_sweep(base, sets, out="sweep-out")
    sw.table[sw.table.metric == "bad_debt_mean"]
"""

from .batch import group_sets as group_sets
from .batch import run_group as run_group
from .batch import structure_key as structure_key
from .run import Sweep as Sweep
from .run import run_sweep as run_sweep
from .sets import SweepSet as SweepSet
from .sets import build_sets as build_sets
from .sets import parse_grid as parse_grid
from .sets import read_table as read_table
from .sets import set_texts as set_texts
from .table import METRICS as METRICS

__all__ = ["METRICS", "Sweep", "SweepSet", "build_sets", "group_sets", "parse_grid", "read_table", "run_group",
           "run_sweep", "set_texts", "structure_key"]
