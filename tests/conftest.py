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

# ---- hypothesis profiles: DUMPKIT_HYPOTHESIS_PROFILE=ci (default) or nightly ---------------------------
# ci: derandomised (the same examples every run, so a red CI is reproducible), each test's own budget.
# nightly: random examples, NIGHTLY_FACTOR times each test's max_examples, a deadline on every example
# (a slow example is a finding), and the example database on so a failure is replayed first next night.
NIGHTLY_FACTOR = int(os.environ.get("DUMPKIT_NIGHTLY_FACTOR", "10"))
NIGHTLY_DEADLINE_MS = 5000
try:
    from hypothesis import HealthCheck, settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    _hsettings.register_profile("nightly", derandomize=False, max_examples=1000, deadline=NIGHTLY_DEADLINE_MS,
                                print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    HYPOTHESIS_PROFILE = os.environ.get("DUMPKIT_HYPOTHESIS_PROFILE", "ci")
    _hsettings.load_profile(HYPOTHESIS_PROFILE)
except ImportError:                       # hypothesis is a test extra; a bare checkout can still collect
    HYPOTHESIS_PROFILE = "none"


def pytest_report_header(config):
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} (DUMPKIT_HYPOTHESIS_PROFILE=ci|nightly)"


def _widen_for_nightly(items):
    """Under the nightly profile, widen every test's own @settings: a test's explicit values would
    otherwise win over the profile (max_examples, derandomize=True...)."""
    if HYPOTHESIS_PROFILE != "nightly":
        return
    done = set()
    for item in items:
        fn = getattr(item, "obj", None)
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if own is None or id(fn) in done:
            continue
        done.add(id(fn))
        deadline = own.deadline if own.deadline is not None else NIGHTLY_DEADLINE_MS
        fn._hypothesis_internal_use_settings = _hsettings(
            own, max_examples=own.max_examples * NIGHTLY_FACTOR, derandomize=False, deadline=deadline)
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


def _skip_opt_in(config, items):
    """`slow` and `bench` tests are opt-in: they run only when `-m` names their marker
    (`pytest -m slow`), so the default suite stays within its time budget."""
    expr = config.getoption("markexpr") or ""
    for marker in ("slow", "bench"):
        if marker in expr:
            continue
        skip = pytest.mark.skip(reason=f"opt-in: pytest -m {marker}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_collection_modifyitems(config, items):
    # one hook (a second definition would silently replace the first): opt-in markers, nightly widening
    _skip_opt_in(config, items)
    _widen_for_nightly(items)
