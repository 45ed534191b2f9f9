"""Kernel time per path-step of one source tree, for side-by-side (A/B) comparisons of two commits.

    git worktree add /tmp/before <commit>
    python benchmarks/ab.py --tree /tmp/before --config default   # then the current tree: --tree .

Imports ``perpjax`` from ``--tree``, builds the model from the packaged default config (``default``)
or ``benchmarks/workload.yaml`` (``workload``), compiles ``simulate_chunk`` once, and prints one JSON
line: best of ``--repeats`` runs of ``--paths`` paths, in ns per path-step. Run the trees alternately
a few times: machine noise on a shared CPU is about +-15 %.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=".")
    ap.add_argument("--config", choices=["default", "workload"], default="default")
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=4)
    a = ap.parse_args()
    tree = Path(a.tree).resolve()
    sys.path.insert(0, str(tree))
    import jax
    import jax.numpy as jnp

    import perpjax
    from perpjax.config import build_model, load_config
    from perpjax.engine import simulate_chunk
    from perpjax.random import seed_key

    assert Path(perpjax.__file__).resolve().is_relative_to(tree), perpjax.__file__
    try:
        from perpjax.io import cpu_model
    except ImportError:  # a tree older than perpjax.io.cpu_model
        def cpu_model():
            return platform.processor() or platform.machine()
    cfg = None if a.config == "default" else Path(__file__).resolve().parent / "workload.yaml"
    model = build_model(load_config(cfg))[0]
    key = seed_key(0)
    jax.block_until_ready(simulate_chunk(model, key, jnp.uint32(0), a.paths))
    best = float("inf")
    for r in range(a.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(simulate_chunk(model, key, jnp.uint32(a.paths * (r + 1)), a.paths))
        best = min(best, time.perf_counter() - t0)
    ns = best / (a.paths * model.grid.n_steps) * 1e9
    print(json.dumps({"tree": str(tree), "config": a.config, "paths": a.paths, "steps": model.grid.n_steps,
                      "ns_per_path_step": round(ns, 1), "cpu": cpu_model(),
                      "jax": jax.__version__}))


if __name__ == "__main__":
    main()
