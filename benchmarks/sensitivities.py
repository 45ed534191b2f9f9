"""Sensitivities benchmark (issue 15): pathwise gradient vs hard finite difference per parameter x metric
on the default config and ``benchmarks/workload.yaml``, and what the gradients cost over a forward run.

    python benchmarks/sensitivities.py --paths 2000 --cost-paths 500

Prints one markdown table per config (gradient +- SE beside FD +- SE, z, flag) and a cost table:
wall time per path, compilation excluded, of the hard forward run (the fastest of the 2p + 1 runs),
the sparse relaxed forward run, the pathwise Jacobian of all parameters in forward mode on the sparse
relaxed engine (the default, ``forward``) and in reverse mode on the dense one (``reverse``), each on
``--cost-paths`` paths in two chunks, and the table's own pathwise pass (``pathwise_in_run``).
One JSON line per config follows each table (``--json FILE`` appends them there too).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import jax

from perpjax.config import apply_overrides, load_config
from perpjax.io import cpu_model
from perpjax.sensitivities import (
    DEFAULT_WRT,
    PARAMS,
    TEMPERATURE,
    parse_bumps,
    parse_wrt,
    path_grads,
    prepare,
    run_sensitivities,
)
from perpjax.sensitivities.job import REVERSE_CHUNK
from perpjax.sensitivities.params import base_of

HERE = Path(__file__).resolve().parent
CONFIGS = {"default": None, "workload": str(HERE / "workload.yaml")}


def pm(v, e) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.4g} ± {e:.2g}"


def markdown(table) -> str:
    lines = ["| metric | parameter | pathwise ± SE | FD ± SE | z | z paired | flag |", "|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        flag = "n/a" if r.agree == "" else ("agree" if r.agree else "**disagree**")
        lines.append(f"| {r.metric} | {r.parameter} | {pm(r.gradient, r.gradient_se)} | {pm(r.fd, r.fd_se)} | "
                     f"{r.z:+.2f} | {r.z_paired:+.2f} | {flag} |")
    return "\n".join(lines)


def cost(setup, n: int) -> dict:
    """Seconds per path (compilation excluded) of the sparse relaxed forward run and of both AD modes,
    in chunks of n / 2 paths (reverse mode: at most ``REVERSE_CHUNK``, as ``--ad reverse`` runs)."""
    base = base_of(setup.resolved)
    kw = {"seed": setup.seed, "n_paths": n, "tau": setup.temperature}
    half = max(1, n // 2)
    out = {}
    for label, extra in (("relaxed_forward", {"forward_only": True, "chunk": half}),
                         ("reverse", {"ad": "reverse", "chunk": min(half, REVERSE_CHUNK)}),
                         ("forward", {"ad": "forward", "chunk": half})):
        out[label] = path_grads(setup.model, base, setup.names, **kw, **extra).seconds_per_path
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=2000)
    p.add_argument("--cost-paths", type=int, default=500, help="paths of the extra cost runs (0: skip them)")
    p.add_argument("--configs", default="default,workload")
    p.add_argument("--wrt", default=",".join(DEFAULT_WRT), help="parameters (all seven: --wrt all)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--temperature", type=float, default=TEMPERATURE)
    p.add_argument("--json", help="append one JSON line per config to this file")
    a = p.parse_args(argv)
    print(f"CPU: {cpu_model()}; jax {jax.__version__}; backend {jax.default_backend()}")
    names = tuple(PARAMS) if a.wrt == "all" else parse_wrt(a.wrt)
    for name in a.configs.split(","):
        cfg = apply_overrides(load_config(CONFIGS[name]), a.overrides)
        setup = prepare(cfg, names, parse_bumps([], names), paths=a.paths, seed=None, temperature=a.temperature)
        table, extra = run_sensitivities(setup, progress=lambda m: None)
        print(f"\n### {name}: {a.paths:,} paths, seed {setup.seed}, temperature {setup.temperature:g}, "
              f"parameters {','.join(names)}, "
              f"wall {extra['sensitivities_wall_seconds']:.0f} s\n")
        print(markdown(table))
        c = {"hard_forward": extra["cost"]["hard_forward_seconds_per_path"]}
        c.update(cost(setup, a.cost_paths) if a.cost_paths else {})
        c["pathwise_in_run"] = extra["cost"]["pathwise_seconds_per_path"]
        print("\n| run | ms per path | x hard forward |\n|---|---|---|")
        for k, v in c.items():
            print(f"| {k} | {v * 1e3:.3f} | {v / c['hard_forward']:.1f} |")
        line = {"config": name, "paths": a.paths, "cost_seconds_per_path": c, "rows": table.to_dict("records")}
        print(json.dumps(line, default=str))
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(line, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
