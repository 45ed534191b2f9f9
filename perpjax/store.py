"""Output directories of a run: checked and locked before any compute, and the per-chunk result store.

``OutDir``: an output directory, created if needed, checked writable, and held under an exclusive
``fcntl.flock`` on ``OUT/.lock`` for the whole run: a second run into the same directory is refused
with a message naming it (the lock dies with its process, so a killed run never leaves a stale one).

``ChunkStore``: each finished chunk of paths is one Parquet file ``OUT/paths/chunk-NNNNNN.parquet``
(written atomically) holding the chunk's per-path values (named columns, and ``path``: the path index)
and, in the file's metadata, the chunk's per-unit sums. The store knows columns by name only: which
values a chunk holds and what their columns are called is the engine's (``engine.driver.stored_columns``:
one column per ``Outcome`` per-path field, ``path_log_return__BTC`` for one asset of a per-asset one), so
the store imports nothing from the engine and the driver imports the store. ``OUT/paths/_run.json`` states
which run the chunks belong to (config hash, seed, paths, chunk size). The chunk files are the
checkpoint, in the engine's fields: ``--resume`` skips the chunks present, and each chunk costs the
same to write whatever the run's size. The per-path table users read (``perpjax.load(DIR).paths``) is
``engine.outputs.path_columns`` of them: the same names and values as ``Result.paths``.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .errors import OutDirError as OutDirError  # defined in the leaf module; re-exported here

RUN_FILE = "_run.json"  # "_": Parquet readers of the folder skip it
RESULT_FILES = ("summary.json", "accounts.csv", "tiers.csv", "manifest.json", "compare.csv")


class OutDir:
    """An output directory held under an exclusive lock: ``with OutDir(path): ...``."""

    def __init__(self, path, *, what: str = "--out"):
        self.path = Path(path)
        self.what = what
        self._fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self) -> None:
        import fcntl

        p = self.path
        if p.exists() and not p.is_dir():
            raise OutDirError(f"{self.what}: {p} exists and is not a directory; choose another output directory")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutDirError(f"{self.what}: cannot create {p}: {e.strerror or e}") from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutDirError(f"{self.what}: {p} is not writable")
        try:
            fd = os.open(p / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutDirError(f"{self.what}: cannot create the lock file {p / '.lock'}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            raise OutDirError(f"{self.what}: {p} is in use by another perpjax run"
                              + (f" ({holder})" if holder else "")
                              + "; wait for it to finish or choose another output directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def clear_results(self) -> None:
        """Remove the result files of an earlier run (a new run must not sit beside old numbers)."""
        for name in RESULT_FILES:
            (self.path / name).unlink(missing_ok=True)


def check_disk_space(folder, n_paths: int, bytes_per_path: int) -> None:
    """Refuse, before any compute, a run whose per-path table cannot fit on ``folder``'s filesystem
    (``bytes_per_path``: the uncompressed row, an upper bound of what Parquet stores)."""
    import shutil

    need = int(n_paths) * int(bytes_per_path)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise OutDirError(f"paths: {n_paths:,} paths need about {need / 1e9:,.1f} GB for the per-path table in "
                          f"{folder}, which has {free / 1e9:,.1f} GB free; run fewer paths, or split the run into "
                          "runs with different seeds in different directories")


def _names(columns) -> list[str]:
    """A value's chunk-file columns: one name (a (paths,) value) or a list of them (a (paths, k) value)."""
    return [columns] if isinstance(columns, str) else list(columns)


class ChunkStore:
    """The per-chunk result files of one run in ``folder`` (see the module doc). ``asset_names``: the run's
    assets, in order (the engine names a per-asset value's columns after them)."""

    def __init__(self, folder, *, config_sha: str, seed: int, paths: int, asset_names):
        self.folder = Path(folder)
        self.ident = {"config_sha256": config_sha, "seed": int(seed), "paths": int(paths)}
        self.asset_names = list(asset_names)
        self.chunk = None

    # -- the run's identity and resume

    def begin(self, chunk: int, *, resume: bool) -> None:
        """Start (``resume=False``: earlier chunks removed) or continue (same run only) the store."""
        self.chunk = int(chunk)
        run_file = self.folder / RUN_FILE
        want = {**self.ident, "chunk_size": self.chunk, "format": 1}
        if resume and run_file.exists():
            try:
                have = json.loads(run_file.read_text())
                if not isinstance(have, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                raise ConfigError(f"checkpoint: {run_file} is unreadable ({e}); remove {self.folder} "
                                  "to start over") from None
            names = {"config_sha256": "config", "seed": "seed", "paths": "paths", "chunk_size": "chunk size",
                     "format": "file format"}
            diff = [f"{names[k]} ({have.get(k)!r} saved, {want[k]!r} now)" if k != "config_sha256"
                    else "config (the resolved config's hash differs)"
                    for k in names if have.get(k) != want[k]]
            if diff:
                raise ConfigError(f"checkpoint: {self.folder} belongs to another run: " + "; ".join(diff)
                                  + "; run without --resume to start over, or choose another --out")
            return
        if resume and any(self.folder.glob("chunk-*.parquet")):
            raise ConfigError(f"checkpoint: {self.folder} has chunk files but no {RUN_FILE}; "
                              "run without --resume to start over")
        self.folder.mkdir(parents=True, exist_ok=True)
        for f in self.folder.glob("chunk-*.parquet"):
            f.unlink()
        from .io import atomic_write_json

        atomic_write_json(run_file, want)

    def _file(self, start: int) -> Path:
        return self.folder / f"chunk-{start // self.chunk:06d}.parquet"

    def completed(self) -> set[int]:
        """Starts of the chunks already stored."""
        done = set()
        for f in self.folder.glob("chunk-*.parquet"):
            try:
                done.add(int(f.stem.split("-")[1]) * self.chunk)
            except (IndexError, ValueError):
                continue
        return done

    # -- writing and reading

    def write(self, start: int, n: int, sums: dict, columns: dict) -> None:
        """Store one chunk: ``columns`` (column name -> (n,) array) and the chunk's per-unit ``sums``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .io import atomic_write_bytes

        if "path" in columns:
            raise ValueError("ChunkStore.write: 'path' is the store's own column (the path index)")
        cols = {"path": np.arange(start, start + n, dtype=np.int64)}
        for name, v in columns.items():
            v = np.asarray(v)
            if v.shape != (n,):
                raise ValueError(f"ChunkStore.write: column {name!r} has shape {v.shape}, not ({n},)")
            cols[name] = v
        buf = io.BytesIO()
        np.savez(buf, **sums)
        table = pa.table(cols).replace_schema_metadata(
            {b"perpjax_sums": base64.b64encode(buf.getvalue()), b"perpjax_start": str(start).encode(),
             b"perpjax_n": str(n).encode()})
        out = pa.BufferOutputStream()
        pq.write_table(table, out)
        atomic_write_bytes(self._file(start), out.getvalue().to_pybytes())

    def _files(self) -> list[Path]:
        return [self._file(s) for s in sorted(self.completed())]

    def sums(self, start: int) -> dict:
        """The per-unit sums stored with the chunk at ``start``."""
        import pyarrow.parquet as pq

        f = self._file(start)
        try:
            meta = pq.read_schema(f).metadata or {}
            with np.load(io.BytesIO(base64.b64decode(meta[b"perpjax_sums"]))) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any fault of a stored file is a corrupted checkpoint
            raise ConfigError(f"checkpoint: {f} is corrupted ({type(e).__name__}: {e}); remove it and run "
                              "again with --resume to recompute that chunk") from None

    def verify(self, start: int, n: int) -> None:
        """Raise a ``ConfigError`` naming the chunk file if it is not a complete chunk of ``n`` paths."""
        import pyarrow.parquet as pq

        f = self._file(start)
        try:
            md = pq.read_metadata(f)
            ok = md.num_rows == n and (md.metadata or {}).get(b"perpjax_start") == str(start).encode()
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"checkpoint: {f} is corrupted ({type(e).__name__}: {e}); remove it and run "
                              "again with --resume to recompute that chunk") from None
        if not ok:
            raise ConfigError(f"checkpoint: {f} does not hold paths {start}..{start + n - 1}; remove it and run "
                              "again with --resume")
        self.sums(start)

    def chunks(self, layout: dict):
        """Per-path values chunk by chunk in path order, one file read at a time (memory: one chunk).
        ``layout``: key -> a column name (the value is that (rows,) column) or a list of names (the value
        is those columns side by side, (rows, len)); yields dicts key -> value."""
        import pyarrow.parquet as pq

        names = {k: _names(c) for k, c in layout.items()}
        for f in self._files():
            try:
                t = pq.read_table(f, columns=[c for cs in names.values() for c in cs])
            except Exception as e:  # noqa: BLE001
                raise ConfigError(f"checkpoint: {f} is corrupted ({type(e).__name__}: {e})") from None
            yield {k: t.column(cs[0]).to_numpy() if isinstance(layout[k], str)
                   else np.column_stack([t.column(c).to_numpy() for c in cs]) for k, cs in names.items()}
            del t

    def column(self, columns) -> np.ndarray:
        """A per-path value over all stored chunks, in path order: ``columns`` one name, (paths,), or a
        list of names, (paths, len); read into one preallocated array (memory: the value, once). The
        run's summary does not use it: it streams the chunks (``chunks``, ``metrics.PathTable``)."""
        import pyarrow.parquet as pq

        names = _names(columns)
        n_cols = None if isinstance(columns, str) else len(names)
        files = self._files()
        out, row = None, 0
        for f in files:
            try:
                t = pq.read_table(f, columns=names)
            except Exception as e:  # noqa: BLE001
                raise ConfigError(f"checkpoint: {f} is corrupted ({type(e).__name__}: {e})") from None
            if out is None:
                total = t.num_rows * len(files)  # every chunk but the last is full; trimmed below
                dtype = t.column(names[0]).to_numpy().dtype
                out = np.empty((total,) if n_cols is None else (total, n_cols), dtype)
            m = t.num_rows
            if row + m > out.shape[0]:
                out = np.concatenate([out, np.empty((row + m - out.shape[0], *out.shape[1:]), out.dtype)])
            for j, c in enumerate(names):
                v = t.column(c).to_numpy()
                if n_cols is None:
                    out[row:row + m] = v
                else:
                    out[row:row + m, j] = v
            row += m
            del t
        return out[:row] if out is not None else np.empty((0,) if n_cols is None else (0, n_cols))


class StoredOutcome:
    """An ``engine.Outcome`` whose per-path fields are read from a ``ChunkStore`` when asked for (one
    field at a time: memory is one column, not the whole per-path table). ``layout``: per-path field ->
    its column or columns in the store (``ChunkStore.chunks``)."""

    def __init__(self, store: ChunkStore, fields: dict, layout: dict):
        self._store = store
        self._layout = dict(layout)
        self.__dict__.update(fields)

    def __getattr__(self, name):
        layout = self.__dict__.get("_layout", {})
        if name in layout:
            return self._store.column(layout[name])
        raise AttributeError(name)

    @property
    def n_chunks(self) -> int:
        """How many chunk files hold the run's paths."""
        return len(self._store.completed())

    @property
    def chunk_rows(self) -> int:
        """Paths per chunk file (the last may hold fewer)."""
        return self._store.chunk

    def read_chunks(self, keys):
        """The per-path fields ``keys``, one chunk file at a time (``ChunkStore.chunks``)."""
        return self._store.chunks({k: self._layout[k] for k in keys})
