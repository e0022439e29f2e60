"""Shared test fixtures.

Tests that read ../shared (the real dumps, symbol store, logs) skip with a
reason when it is absent: a user's fresh clone has no shared/ folder.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # make the `fixtures` package importable
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("DUMPKIT_SHARED", ROOT.parent / "shared"))
REAL = SHARED / "data" / "real"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data/real, or skip the test with the reason."""
    p = REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only on developer and CI machines)")
    return p


@pytest.fixture
def real_triage() -> Path:
    return shared_path("dumps", "triage_x64.dmp")


@pytest.fixture
def symstore() -> Path:
    return shared_path("symstore")


# make `from conftest import shared_path` work as well as `from .conftest import ...`
sys.modules.setdefault("conftest", sys.modules[__name__])
