#!/usr/bin/env bash
# perpjax on an accelerator, measured against the plain lax.scan reference in the same run (issue 14, item 5).
#
#   bash benchmarks/gpu.sh [--quick] [--out DIR] [--budget SECONDS]
#
# Measures, each in its own Python process under a timeout (a crash, an out-of-memory or a hang costs
# that one row, never the run):
#   - the workload (benchmarks/workload.yaml) by perpjax's kernel and by benchmarks/plain_scan.py,
#     at 1M and 4M paths (compile + first run, best of 2, blocked until ready; peak device memory
#     from jax's device.memory_stats(), peak RSS beside it);
#   - the default config's book by perpjax's kernel at 1M and 4M paths;
#   - two GPU variants of the workload at 4M paths: scan unroll 4, and the dense liquidation branch
#     (compaction threshold 0 instead of 1/32);
#   - one sweep of 16 parameter sets (`perpjax sweep`, 4 x 4 grid on the workload) against one run of
#     the same config through the CLI (`perpjax simulate`), whole-command wall times; skipped with a
#     message when this checkout has no `perpjax sweep`.
# and prints a table with path-steps/s and the ratios (perpjax / plain scan), also written to
# DIR/results.md and DIR/results.json (one record per measurement: DIR/results.jsonl).
# Under 5 minutes on an H100/H200 (--budget, default 285 s, caps the total; each step has its own cap).
# --quick: small sizes for a CPU (how this script is tested without an accelerator).
set -u
cd "$(dirname "$0")/.."
QUICK=0
OUT=gpu-results
BUDGET=285
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  SIZES="2000 8000"; SWEEP_PATHS=2000; REPEATS=1
else
  SIZES="1000000 4000000"; SWEEP_PATHS=1000000; REPEATS=2
fi
mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"
PY=${PYTHON:-python}
START=$SECONDS
BACKEND=$("$PY" -c "import jax; print(jax.default_backend(), jax.devices()[0].device_kind)" 2>/dev/null)
echo "gpu.sh: jax backend: ${BACKEND:-none (is jax installed?)}" >&2
case "$BACKEND" in
  cpu*) [ "$QUICK" = 0 ] && echo "gpu.sh: no accelerator found: install jax with CUDA (pip install -e . 'jax[cuda12]')," \
        "or use --quick for a CPU check" >&2 ;;
esac

# run NAME CAP CMD...: one measurement in its own process; its JSON lines (starting with '{') go to
# results.jsonl, a failure or timeout is recorded as an error row.
run() {
  local name="$1" cap="$2"; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt 5 ]; then
    echo "{\"case\": \"$name\", \"error\": \"skipped: the ${BUDGET} s budget is spent\"}" >> "$RES"
    echo "gpu.sh: $name skipped (budget spent)" >&2; return
  fi
  echo "gpu.sh: $name (timeout ${cap} s) ..." >&2
  local log="$OUT/$name.log"
  timeout -k 5 "$cap" "$@" > "$log" 2> "$OUT/$name.err"
  local rc=$?
  if grep -q '^{' "$log"; then
    grep '^{' "$log" | "$PY" -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l); r.setdefault("case", sys.argv[1]); r["name"] = sys.argv[1]; print(json.dumps(r))' "$name" >> "$RES"
  fi
  if [ $rc -ne 0 ]; then
    local why="exit $rc"; [ $rc -eq 124 ] && why="timed out after ${cap} s"
    local tail; tail=$(tail -c 400 "$OUT/$name.err" | tr '\n"\\' '   ')
    echo "{\"case\": \"$name\", \"name\": \"$name\", \"error\": \"$why: $tail\"}" >> "$RES"
    echo "gpu.sh: $name failed ($why), see $OUT/$name.err" >&2
  fi
}

# perpjax's kernel on one config (benchmarks/run.py's harness), with peak RSS beside the device's peak.
PERPJAX_CASE='
import json, resource, sys
sys.path.insert(0, "benchmarks")
import run as harness
config = None if sys.argv[1] == "default" else "benchmarks/workload.yaml"
unroll, sparse = (int(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 5 else (1, "")
if sparse:  # compaction threshold of the liquidation branch (sparse.where_active); 0 = dense select
    import functools
    harness.simulate_chunk = functools.partial(harness.simulate_chunk, sparse=float(sparse))
r = harness.bench_perpjax(int(sys.argv[2]), int(sys.argv[3]), unroll, config)
r["case"] = "perpjax_" + sys.argv[1]
r["sparse"] = sparse or "default (1/32)"
r["ns_per_path_step"] = 1e9 / r["path_steps_per_s"]
r["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(r))
'
# a whole CLI command, timed (wall, including start-up and compile)
CLI_CASE='
import json, subprocess, sys, time
t0 = time.perf_counter()
r = subprocess.run([sys.executable, "-m", "perpjax", *sys.argv[3:]], capture_output=True, text=True)
wall = time.perf_counter() - t0
sys.stderr.write(r.stderr[-3000:])
if r.returncode == 0:
    print(json.dumps({"case": sys.argv[1], "wall_s": wall, "sets": int(sys.argv[2]), "command": " ".join(sys.argv[3:])}))
sys.exit(r.returncode)
'

for n in $SIZES; do
  run "perpjax_workload_$n" 80 "$PY" -c "$PERPJAX_CASE" workload "$n" "$REPEATS"
  run "plain_scan_$n" 60 "$PY" benchmarks/plain_scan.py --paths "$n" --repeats "$REPEATS"
done
for n in $SIZES; do
  run "perpjax_default_$n" 110 "$PY" -c "$PERPJAX_CASE" default "$n" "$REPEATS"
done
if "$PY" -m perpjax sweep --help > /dev/null 2>&1; then
  run sweep_16 150 "$PY" -c "$CLI_CASE" sweep_16 16 sweep benchmarks/workload.yaml --paths "$SWEEP_PATHS" \
    --grid liquidation.fee_rate=0.003,0.004,0.005,0.006 --grid funding.interest=0.00005,0.0001,0.0002,0.0003 \
    --out "$OUT/sweep-out" --no-progress
  run single_cli 60 "$PY" -c "$CLI_CASE" single_cli 1 simulate benchmarks/workload.yaml --paths "$SWEEP_PATHS" \
    --out "$OUT/single-out" --no-progress
else
  echo "{\"case\": \"sweep_16\", \"error\": \"skipped: this checkout has no 'perpjax sweep'\"}" >> "$RES"
  echo "gpu.sh: no 'perpjax sweep' in this checkout: sweep skipped" >&2
fi

# GPU variants of the roofline plan (benchmarks/RESULTS.md): unroll 4, and the dense liquidation branch
BIG=${SIZES##* }
run "perpjax_workload_${BIG}_unroll4" 80 "$PY" -c "$PERPJAX_CASE" workload "$BIG" "$REPEATS" 4 ""
run "perpjax_workload_${BIG}_dense" 80 "$PY" -c "$PERPJAX_CASE" workload "$BIG" "$REPEATS" 1 0

"$PY" - "$RES" "$OUT" "$SWEEP_PATHS" "$((SECONDS - START))" <<'PY'
"""Collect the rows: ratios to the plain scan, the sweep's throughput per set, a markdown table."""
import json
import sys

res, out, sweep_paths, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(line) for line in open(res) if line.strip()]
by = {r["name"] if "name" in r else r["case"]: r for r in rows}
dev = next((f"{r['device']} ({r['platform']}), jax {r['jax']}" for r in rows if "device" in r), "unknown device")
lines = [f"device: {dev}; whole script {wall} s", "",
         "| case | paths | run (best) | path-steps/s | ns/path-step | compile + first | peak device mem | peak RSS |"
         " vs plain scan |", "|---|---|---|---|---|---|---|---|---|"]
gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "n/a"  # noqa: E731
ratios = {}
for name, r in by.items():
    if "error" in r:
        lines.append(f"| {name} | | | | | | | | **{r['error'][:160]}** |")
        continue
    if "path_steps_per_s" not in r:
        continue
    ratio = ""
    if name.startswith("perpjax_workload_"):
        ref = by.get("plain_scan_" + name.split("_")[2], {})
        if "path_steps_per_s" in ref:
            ratios[name] = r["path_steps_per_s"] / ref["path_steps_per_s"]
            ratio = f"**{ratios[name]:.2f}x**"
    lines.append(f"| {name} | {r['paths']:,} | {r['run_best_s']:.3f} s | {r['path_steps_per_s']:.3g} | "
                 f"{1e9 / r['path_steps_per_s']:.3g} | {r['compile_plus_first_s']:.1f} s | "
                 f"{gib(r.get('peak_memory_bytes') if r.get('platform') != 'cpu' else None)} | "
                 f"{gib(r.get('peak_rss_bytes'))} | {ratio} |")
sw, one = by.get("sweep_16", {}), by.get("single_cli", {})
summary = {"device": dev, "ratios_perpjax_over_plain_scan": ratios, "rows": rows, "script_wall_s": wall}
if "wall_s" in sw and "wall_s" in one:
    per_set = sw["wall_s"] / 16
    summary["sweep_wall_per_set_over_single_run"] = per_set / one["wall_s"]
    lines += ["", f"sweep of 16 sets x {sweep_paths:,} paths: {sw['wall_s']:.1f} s whole command "
              f"({per_set:.2f} s per set) vs one run of the same config {one['wall_s']:.1f} s: per set "
              f"{per_set / one['wall_s']:.2f}x a single run (target <= 1.5x; both include start-up and compile)"]
text = "\n".join(lines)
print(text)
open(f"{out}/results.md", "w").write(text + "\n")
json.dump(summary, open(f"{out}/results.json", "w"), indent=1)
PY
