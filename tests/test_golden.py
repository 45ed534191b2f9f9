"""The stored reference runs (``tests/golden_cases.py``): every build reproduces them, bit for bit on
the machine that wrote them and within the derived rounding bound elsewhere; and the comparison is
strict enough to catch a real change."""

import copy
import tempfile

import numpy as np
import pytest

from tests.golden_cases import CASES, DATA, NEEDS_DATA, compare, load, run_case, stored_from


@pytest.mark.parametrize("name", list(CASES))
def test_same_numbers_as_stored(name):
    if name in NEEDS_DATA and not DATA.exists():
        pytest.skip(f"needs {DATA} (../shared/data beside the clone)")
    with tempfile.TemporaryDirectory() as tmp:
        compare(name, CASES[name](tmp))


def _as_result(stored):
    """A stored case in the shape a fresh run returns, for editing."""
    import pandas as pd

    arrays = stored["arrays"]
    return {"summary": copy.deepcopy(stored["summary"]), "tolerance": stored["tolerance"],
            "accounts": pd.DataFrame({k[10:]: v.copy() for k, v in arrays.items() if k.startswith("accounts__")}),
            "paths": pd.DataFrame({k[7:]: v.copy() for k, v in arrays.items() if k.startswith("paths__")})}


@pytest.mark.parametrize("tier", ["exact", "rounding"])
def test_changed_liquidation_on_one_path_fails(tier):
    stored = load("default")
    compare("default", _as_result(stored), tier=tier, stored=stored)  # unchanged: passes
    # one more liquidation on the path with the fewest: the count changes, and so do fees and losses
    res = _as_result(stored)
    p = res["paths"]
    i = int(np.argmin(p["liquidations"].to_numpy()))
    p.loc[i, "liquidations"] += 1
    with pytest.raises(AssertionError, match="paths__liquidations"):
        compare("default", res, tier=tier, stored=stored)
    # the same liquidation seen only in its money: one typical liquidation's fee added to that path
    res = _as_result(stored)
    fees, count = res["paths"]["fees"].to_numpy(), res["paths"]["liquidations"].to_numpy()
    res["paths"].loc[i, "fees"] = fees[i] + float(np.median(fees[count > 0] / count[count > 0]))
    with pytest.raises(AssertionError, match="paths__fees"):
        compare("default", res, tier=tier, stored=stored)


def test_input_changes_fail(tmp_path):
    """One ulp of a float32 vol fails the exact tier (the same machine must reproduce bit for bit); a
    1e-4 relative change fails the rounding tier too. Below that, the rounding tier cannot tell an input
    change from another CPU's rounding (docs/testing.md has the measurement)."""
    over = ["time.horizon_seconds=7200"]
    base = stored_from(run_case(None, over, paths=256))
    assert base["tolerance"]["steps"] == 120
    compare("default", run_case(None, over, paths=256), tier="exact", stored=base)  # deterministic here
    one_ulp = float(np.nextafter(np.float32(0.62), np.float32(1.0)))
    with pytest.raises(AssertionError, match="differ"):
        compare("default", run_case(None, [*over, f"assets.0.vol={one_ulp!r}"], paths=256), tier="exact",
                stored=base)
    with pytest.raises(AssertionError, match="beyond the bound"):
        compare("default", run_case(None, [*over, f"assets.0.vol={0.62 * (1 + 1e-4)!r}"], paths=256),
                tier="rounding", stored=base)
