"""The persistent compilation cache: on by default, a second process hits it, and it can be disabled."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import perpjax
    perpjax.run(None, paths=64, overrides=["time.horizon_seconds=600", "book.accounts=[{id: a, collateral: 1e5, "
                "positions: [{asset: BTC, size: 1, entry: 95000}]}]"])
    print("HITS", events.count("/jax/compilation_cache/cache_hits"), "DIR", jax.config.jax_compilation_cache_dir)
""")


def _run(env):
    r = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("HITS")][-1].split()
    return int(line[1]), line[3]


def test_second_process_hits_the_cache_and_off_disables_it(tmp_path):
    env = {"PERPJAX_COMPILATION_CACHE": str(tmp_path / "cache")}
    first, d = _run(env)
    assert d == str(tmp_path / "cache") and any((tmp_path / "cache").iterdir())
    second, _ = _run(env)
    assert second > first  # the simulation kernel (and helpers) loaded instead of compiled
    hits, d = _run({"PERPJAX_COMPILATION_CACHE": "off"})
    assert hits == 0 and d == "None"


def test_the_manifest_reports_compile_time_and_cache_hits(tmp_path):
    import perpjax

    over = ["time.horizon_seconds=780", "book.accounts=[{id: a, collateral: 1e5, positions: [{asset: BTC, size: 1, "
            "entry: 95000}]}]"]
    first = perpjax.run(None, paths=64, seed=5, overrides=over).manifest
    again = perpjax.run(None, paths=64, seed=6, overrides=over).manifest  # same structure: no new compile
    # compiled here or loaded from the persistent cache (a warm cache from an earlier session)
    assert first["compiles"] + first["compile_cache_hits"] >= 1, first
    assert again["compiles"] == 0 and again["compile_seconds"] == 0.0, again
    assert {"compile_seconds", "compiles", "compile_cache_hits"} <= set(again)
