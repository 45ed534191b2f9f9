"""Several processes (``perpjax/distributed.py``): two local CPU processes joined by ``jax.distributed``
give the single-process run's results bit for bit (float64), and bad settings fail fast with exit 2.

The equality test runs real ``perpjax simulate`` subprocesses (JAX's runtime cannot be initialised
twice in one process); the bad settings are refused before JAX starts, so they run in this process.
The run: the default book, 30 one-minute steps, 500 paths in 5 chunks of 100 (process 0 simulates
chunks 0, 2, 4; process 1 chunks 1, 3), float64.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from perpjax.cli import main
from perpjax.config import ConfigError
from perpjax.distributed import Cluster, settings

RUN = ["--paths", "500", "--seed", "3", "--no-progress", "--set", "dtype=float64", "--set", "chunk_size=100",
       "--set", "time.horizon_seconds=1800"]
TIMING = ("path_steps_per_second",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _simulate(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("PERPJAX_COORDINATOR", "PERPJAX_NUM_PROCESSES", "PERPJAX_PROCESS_ID", "PERPJAX_INIT_TIMEOUT"):
        env.pop(k, None)
    return subprocess.Popen([sys.executable, "-m", "perpjax", "simulate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _finish(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _results(d):
    s = json.loads((d / "summary.json").read_text())
    for k in TIMING:
        s.pop(k, None)
    return s, pd.read_csv(d / "accounts.csv"), pd.read_csv(d / "tiers.csv"), pd.read_parquet(d / "paths")


def test_two_processes_equal_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    rc, _, err = _finish(_simulate([*RUN, "--out", str(one)]))
    assert rc == 0, err
    port = _free_port()
    dist = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--init-timeout", "60"]
    procs = [_simulate([*RUN, "--out", str(two), *dist, "--process-id", str(i)]) for i in (0, 1)]
    done = [_finish(p) for p in procs]
    for i, (rc, _, err) in enumerate(done):
        assert rc == 0, f"process {i}: {err[-3000:]}"
    assert "process 0 writes the results" in done[1][1]
    s1, a1, t1, p1 = _results(one)
    s2, a2, t2, p2 = _results(two)
    assert s1 == s2  # every metric, bit for bit (JSON floats round-trip exactly)
    pd.testing.assert_frame_equal(a1, a2, check_exact=True)
    pd.testing.assert_frame_equal(t1, t2, check_exact=True)
    p1, p2 = p1.sort_values("path").reset_index(drop=True), p2.sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(p1, p2, check_exact=True)
    assert len(p2) == 500 and sorted(f.name for f in (two / "paths").glob("chunk-*")) == [
        f"chunk-{j:06d}.parquet" for j in range(5)]
    assert s1["p_any_liquidation"] > 0  # the comparison covers liquidations, not only quiet paths


def test_unreachable_coordinator_fails_within_the_timeout(tmp_path, capsys):
    """Process 1 of 2 whose coordinator never answers: exit 2 naming it after ``--init-timeout`` (2 s),
    before JAX starts (in this process: JAX's own failure would abort it), nothing written."""
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    rc = main(["simulate", *RUN, "--out", str(tmp_path / "o"), "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", "2", "--process-id", "1", "--init-timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"cannot reach the coordinator 127.0.0.1:{port} within 2 s" in err
    assert time.monotonic() - t0 < 30  # bounded: 2 s of retries plus the config's validation
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1234"],
     "--process-id (PERPJAX_PROCESS_ID): must be in [0, 1] for 2 processes (got 2)"),
    (["--num-processes", "2", "--process-id", "0"], "--coordinator (PERPJAX_COORDINATOR): required"),
    (["--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"], "both required"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"], "must be >= 1 (got 0)"),
])
def test_inconsistent_settings_exit_2(tmp_path, capsys, flags, message):
    rc = main(["simulate", *RUN, "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_auto_outside_slurm_or_mpi_exits_2(tmp_path, capsys, monkeypatch):
    """``--coordinator auto`` with no Slurm / Open MPI environment: JAX's detection finds nothing,
    exit 2 with what 'auto' needs (JAX raises before starting anything, so this runs in-process)."""
    for k in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(k)
    rc = main(["simulate", *RUN, "--out", str(tmp_path / "o"), "--coordinator", "auto", "--init-timeout", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "'auto' needs a Slurm job step" in err, err
    assert not (tmp_path / "o").exists()


def test_settings_from_the_environment():
    env = {"PERPJAX_COORDINATOR": "node1:7777", "PERPJAX_NUM_PROCESSES": "4", "PERPJAX_PROCESS_ID": "3"}
    assert settings(env=env) == {"coordinator": "node1:7777", "num_processes": 4, "process_id": 3,
                                 "init_timeout": 120}
    assert settings(process_id=1, init_timeout=5, env=env)["process_id"] == 1  # flags win
    assert settings(env={}) is None  # nothing set: one process
    assert settings(coordinator="auto", env={})["coordinator"] == "auto"  # JAX detects Slurm / Open MPI
    with pytest.raises(ConfigError, match=r"PERPJAX_NUM_PROCESSES\): must be an integer"):
        settings(env={**env, "PERPJAX_NUM_PROCESSES": "four"})
    with pytest.raises(ConfigError, match=r"--init-timeout .*: must be in \[1, 86400\]"):
        settings(init_timeout=0, env=env)


def test_chunks_are_shared_round_robin():
    cs = [Cluster(i, 3) for i in range(3)]
    owners = [[c.process_id for c in cs if c.owns(j)] for j in range(7)]
    assert owners == [[0], [1], [2], [0], [1], [2], [0]]  # every chunk exactly once
    assert Cluster().owns(5) and Cluster().leader
