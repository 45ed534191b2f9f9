"""Peak memory of a run into an out dir against the path count, and the CLI's time against the API's.

    python benchmarks/memory.py                       # 1e5, 1e6, 1e7 paths, default book, 15 min horizon
    python benchmarks/memory.py --paths 100000 1000000 --api-paths 1000000

Each case is a fresh process, ``python -m perpjax simulate --out TMP --no-progress --paths N`` on the
packaged default config with ``--set`` overrides (default: a 15-minute horizon at 1-minute steps, so
1e7 paths take minutes on 2 CPU cores, and 20,000-path chunks at every size: one compiled program,
compiled by the ``--warm`` run and read from the persistent cache after). Its peak resident memory is
the child's own ``ru_maxrss`` (``os.wait4``), its time the wall clock around the process. Per-path
results go to Parquet chunk files and the summary streams over them (``metrics.PathTable``), so the
peak should not grow with the paths. Then the same run at ``--api-paths`` through
``perpjax.api.run(cfg, out=TMP)`` in a fresh process, against the CLI's time (both cold processes:
import, compile from the persistent cache, run, write). One JSON line per case, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perpjax.io import cpu_model

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["time.horizon_seconds=900", "chunk_size=20000"]

API = """
import sys
from perpjax import config as C
from perpjax.api import run
cfg = C.load_config(None, sys.argv[3:])
run(cfg, paths=int(sys.argv[1]), out=sys.argv[2], progress=None)
"""


def _child(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit status) of one child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        print(err[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, p.returncode  # ru_maxrss: KiB on Linux


def cli(paths: int, overrides: list[str]) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        sets = [a for o in overrides for a in ("--set", o)]
        return _child([sys.executable, "-m", "perpjax", "simulate", "--out", f"{d}/run", "--no-progress",
                       "--paths", str(paths), *sets])


def api(paths: int, overrides: list[str]) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        return _child([sys.executable, "-c", API, str(paths), f"{d}/run", *overrides])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--api-paths", type=float, default=1e6, help="paths of the CLI vs API timing (0: skip)")
    ap.add_argument("--set", action="append", default=None,
                    help="config overrides (default: a 15-minute horizon, 20,000-path chunks)")
    ap.add_argument("--warm", action="store_true",
                    help="run the first case once before measuring: its compile (a peak of its own) is then "
                         "read from the persistent cache, as in every later case")
    a = ap.parse_args()
    overrides = a.set or OVERRIDES
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "overrides": overrides}
    print(json.dumps(info), flush=True)
    if a.warm:  # the same chunk size as the cases: the same compiled program
        cli(int(a.paths[0]), overrides)
    rows = []
    for n in (int(x) for x in a.paths):
        wall, rss, rc = cli(n, overrides)
        rows.append({"case": "cli", "paths": n, "wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1), "rc": rc})
        print(json.dumps(rows[-1]), flush=True)
    timing = []
    if a.api_paths:
        n = int(a.api_paths)
        for kind, fn in (("cli", cli), ("api", api), ("cli", cli), ("api", api)):  # alternated: machine noise
            wall, rss, rc = fn(n, overrides)
            timing.append({"case": kind, "paths": n, "wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1),
                           "rc": rc})
            print(json.dumps(timing[-1]), flush=True)
    base = rows[0]["peak_rss_mib"] if rows else None
    print("\n| paths | wall (s) | peak RSS (MiB) | ratio to first |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['paths']:,} | {r['wall_s']:.1f} | {r['peak_rss_mib']:,.0f} | {r['peak_rss_mib'] / base:.3f} |")
    if timing:
        best = {k: min(t["wall_s"] for t in timing if t["case"] == k) for k in ("cli", "api")}
        print(f"\nCLI vs API at {int(a.api_paths):,} paths (best of 2 each, alternated): CLI {best['cli']:.1f} s, "
              f"API {best['api']:.1f} s, CLI / API = {best['cli'] / best['api']:.3f}")


if __name__ == "__main__":
    main()
