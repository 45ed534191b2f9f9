"""Every build reproduces the stored reference runs bit for bit (see ``tests/golden_cases.py``)."""

import tempfile

import pytest

from tests.golden_cases import CASES, DATA, NEEDS_DATA, compare


@pytest.mark.parametrize("name", list(CASES))
def test_same_numbers_as_stored(name):
    if name in NEEDS_DATA and not DATA.exists():
        pytest.skip(f"needs {DATA} (../shared/data beside the clone)")
    with tempfile.TemporaryDirectory() as tmp:
        compare(name, CASES[name](tmp))
