"""Several processes and hosts: one run's chunks shared out over processes with ``jax.distributed``.

A run of ``n`` chunks on ``N`` processes: process ``i`` simulates the chunks ``j`` with
``j % N == i`` and writes each to the run's shared ``ChunkStore`` (``OUT/paths/``). Chunk keys are
by global path index, so the union of the processes' chunks is the single-process run's. Process 0
alone locks and clears the out dir and starts the store (``_run.json``) before a first barrier; every
process barriers again after its chunks; then process 0 adds the chunks' per-unit sums in chunk
order and computes the summary from the stored columns, exactly as a single process does with
``--out`` (same numbers, bit for bit), and writes the results. The other processes write nothing
else and exit 0. **The out dir must be one shared filesystem path seen by every process** (NFS,
Lustre, GPFS, or a local disk when all processes run on one machine).

The processes meet through JAX's own runtime (``jax.distributed.initialize``: process 0 hosts the
coordination service; barriers are its ``wait_at_barrier``; no collectives are needed, so no CPU
collectives setting either). Settings come from flags (``perpjax simulate --coordinator HOST:PORT
--num-processes N --process-id I``), else from the environment (``PERPJAX_COORDINATOR``,
``PERPJAX_NUM_PROCESSES``, ``PERPJAX_PROCESS_ID``, ``PERPJAX_INIT_TIMEOUT``), and
``--coordinator auto`` lets JAX detect them under Slurm (``srun``) or Open MPI (``mpirun``).

Failures are bounded: the settings are checked first (``ConfigError``, exit 2); a process other
than 0 waits at most ``init_timeout`` seconds for the coordinator's port to accept a connection and
then fails with a ``ConfigError`` naming it (JAX itself would abort the process, SIGABRT, after its
own retries); process 0 checks that it can listen on the port. A peer that never arrives makes JAX
abort every process after ``init_timeout`` (JAX's behaviour: not catchable from Python); one that
dies later is detected by JAX's heartbeats (100 s).
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from dataclasses import dataclass

from .errors import ConfigError

ENV = {"coordinator": "PERPJAX_COORDINATOR", "num_processes": "PERPJAX_NUM_PROCESSES",
       "process_id": "PERPJAX_PROCESS_ID", "init_timeout": "PERPJAX_INIT_TIMEOUT"}
DEFAULT_INIT_TIMEOUT = 120
"""Seconds a process waits for the others at start-up (``--init-timeout``)."""
RUN_TIMEOUT = 7 * 24 * 3600
"""Seconds a process waits at the barrier after its chunks for the slowest one (a dead peer is found
sooner by JAX's heartbeats)."""
AUTO = "auto"
_BARRIERS = itertools.count()


@dataclass(frozen=True)
class Cluster:
    """The processes of a run: this one's id and their count (``Cluster()`` = a single process)."""

    process_id: int = 0
    num_processes: int = 1
    init_timeout: float = DEFAULT_INIT_TIMEOUT

    @property
    def leader(self) -> bool:
        """Process 0: locks the out dir, starts the store, reduces and writes the results."""
        return self.process_id == 0

    def owns(self, chunk_index: int) -> bool:
        """Whether this process simulates chunk ``chunk_index`` (round robin over the processes)."""
        return chunk_index % self.num_processes == self.process_id

    def barrier(self, name: str, timeout_s: float | None = None) -> None:
        """Wait until every process reaches the barrier ``name`` (no-op for one process)."""
        if self.num_processes == 1:
            return
        from jax._src import distributed as jd  # the runtime's client: a barrier with a timeout

        ms = int(1000 * (self.init_timeout if timeout_s is None else timeout_s))
        # numbered: every process passes the same barriers in the same order, and an id is used once
        try:
            jd.global_state.client.wait_at_barrier(f"perpjax/{next(_BARRIERS)}/{name}", ms)
        except Exception as e:  # noqa: BLE001 - the runtime's errors (deadline, a peer gone) have no common type
            raise ConfigError(f"processes: not every one of the {self.num_processes} processes reached "
                              f"'{name}' within {ms / 1000:g} s (process {self.process_id}; see the other "
                              f"processes' messages): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                              ) from None


_CURRENT = Cluster()


def current() -> Cluster:
    """This process's cluster: the one ``initialize`` joined, else a single process."""
    return _CURRENT


def _int(value, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}: must be an integer (got {value!r})") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings(coordinator=None, num_processes=None, process_id=None, init_timeout=None, env=None) -> dict | None:
    """The distributed settings from flags, else the ``PERPJAX_*`` environment; None for one process.

    Returns {coordinator ("HOST:PORT" or "auto"), num_processes, process_id (None with "auto"),
    init_timeout}. Raises ``ConfigError`` naming the flag (and its variable) for a missing,
    malformed or inconsistent value, before anything starts."""
    env = os.environ if env is None else env
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id,
             "init_timeout": init_timeout}
    what = {}
    for k, v in given.items():
        what[k] = f"{_flag(k)} ({ENV[k]})"
        if v is None and env.get(ENV[k], "").strip():
            given[k] = env[ENV[k]].strip()
    coord, n, i, t = given["coordinator"], given["num_processes"], given["process_id"], given["init_timeout"]
    t = DEFAULT_INIT_TIMEOUT if t is None else _int(t, what["init_timeout"])
    if not 1 <= t <= 86400:
        raise ConfigError(f"{what['init_timeout']}: must be in [1, 86400] seconds (got {t})")
    if coord is None:
        if n is not None or i is not None:
            raise ConfigError(f"{what['coordinator']}: required with --num-processes / --process-id "
                              "(HOST:PORT of process 0, or 'auto' under Slurm / Open MPI)")
        return None
    coord = str(coord).strip()
    if coord.lower() == AUTO:
        if n is not None or i is not None:
            raise ConfigError(f"{what['coordinator']}: 'auto' takes the process count and id from Slurm / Open "
                              "MPI; do not give --num-processes / --process-id with it")
        return {"coordinator": AUTO, "num_processes": None, "process_id": None, "init_timeout": t}
    host, _, port = coord.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{what['coordinator']}: must be HOST:PORT with a port in [1, 65535], or 'auto' "
                          f"(got {coord!r})")
    if n is None or i is None:
        raise ConfigError(f"{what['num_processes']} and {what['process_id']}: both required with --coordinator "
                          f"{coord}")
    n, i = _int(n, what["num_processes"]), _int(i, what["process_id"])
    if n < 1:
        raise ConfigError(f"{what['num_processes']}: must be >= 1 (got {n})")
    if not 0 <= i < n:
        raise ConfigError(f"{what['process_id']}: must be in [0, {n - 1}] for {n} processes (got {i})")
    return {"coordinator": f"{host}:{port}", "num_processes": n, "process_id": i, "init_timeout": t}


def _check_coordinator(coord: str, leader: bool, timeout: float) -> None:
    """Process 0: the port can be listened on. Others: the coordinator accepts a TCP connection
    within ``timeout`` seconds (retried), else a ``ConfigError`` naming it."""
    host, port = coord.rsplit(":", 1)
    host = host.strip("[]")
    if leader:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", int(port)))
        except OSError as e:
            raise ConfigError(f"--coordinator: process 0 cannot listen on port {port} ({e.strerror or e}); "
                              "choose a free port") from None
        return
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(2.0, max(0.1, timeout))):
                return
        except OSError as e:
            last = e.strerror or str(e)
        if time.monotonic() >= deadline:
            raise ConfigError(f"--coordinator: cannot reach the coordinator {coord} within {timeout:g} s "
                              f"(--init-timeout): {last}; is process 0 running and the address reachable "
                              "from this host?")
        time.sleep(0.25)


def initialize(coordinator=None, num_processes=None, process_id=None, init_timeout=None, env=None) -> Cluster:
    """Join the run's processes (``jax.distributed.initialize``) from flags or the environment, before
    any JAX computation; returns the ``Cluster`` (a single process when nothing is set)."""
    global _CURRENT

    s = settings(coordinator, num_processes, process_id, init_timeout, env)
    if s is None or s["num_processes"] == 1:
        _CURRENT = Cluster(init_timeout=DEFAULT_INIT_TIMEOUT if s is None else s["init_timeout"])
        return _CURRENT
    import jax

    t = s["init_timeout"]
    kw = dict(initialization_timeout=int(t), shutdown_timeout_seconds=RUN_TIMEOUT)
    if s["coordinator"] != AUTO:
        _check_coordinator(s["coordinator"], s["process_id"] == 0, t)
        kw.update(coordinator_address=s["coordinator"], num_processes=s["num_processes"],
                  process_id=s["process_id"])
        print(f"perpjax: process {s['process_id']} of {s['num_processes']}: joining {s['coordinator']} "
              f"(waiting up to {t} s for every process)", file=sys.stderr, flush=True)
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:  # auto-detection found nothing, backend already started
        hint = (" ('auto' needs a Slurm job step (srun) or an Open MPI launch (mpirun); elsewhere give "
                "HOST:PORT, --num-processes and --process-id)") if s["coordinator"] == AUTO else ""
        raise ConfigError(f"--coordinator: jax.distributed could not start: {e}{hint}") from None
    _CURRENT = Cluster(jax.process_index(), jax.process_count(), t)
    return _CURRENT
