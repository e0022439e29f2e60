"""Replays every input the atheris harnesses found (fuzz/crashers/<target>/) and the seeds of each
harness: each must run to completion without an exception other than dumpkit's own (the targets
swallow DumpError) and quickly.  A crasher committed here stays fixed.
"""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import settings

from fuzz.targets import ROOT, SEEDS, TARGETS, replay, seed_files

CRASHERS = ROOT / "fuzz" / "crashers"
REGRESSIONS = sorted(p for p in CRASHERS.glob("*/*") if p.is_file() and not p.name.startswith("."))


def test_every_target_has_seeds_in_the_repository():
    for name in TARGETS:
        assert name in SEEDS
        own = [p for p in seed_files(name) if ROOT in p.parents]
        assert own, f"{name}: no seed in the repository"
        assert all(p.stat().st_size < 1 << 20 for p in own if "fuzz" in p.parts)   # small seeds only


@pytest.fixture(scope="module")
def warm_targets():
    """Each target once on empty input, so the timed replays below do not pay for imports (numpy...)."""
    for name in {p.parent.name for p in REGRESSIONS}:
        replay(name, b"")


@pytest.mark.parametrize("path", REGRESSIONS, ids=[f"{p.parent.name}/{p.name[:24]}" for p in REGRESSIONS])
def test_crasher_replays_cleanly(path: Path, warm_targets):
    """Well under a second of CPU each; an out-of-memory input also in bounded memory (its Python
    allocations, numpy's included, peak under 64 MiB: the fuzzer's limit was 2 GiB)."""
    oom = path.name.startswith("oom-")
    if oom:
        tracemalloc.start()
    t = time.process_time()
    try:
        replay(path.parent.name, path.read_bytes())
        cpu = time.process_time() - t
    finally:
        peak = tracemalloc.get_traced_memory()[1] if oom else 0
        if oom:
            tracemalloc.stop()
    assert cpu < (2.0 if oom else 1.0), cpu          # tracemalloc slows the oom replays down
    assert peak < 64 << 20, peak


@pytest.mark.parametrize("name", [n for n in TARGETS if n != "dump"])
def test_targets_accept_their_repository_seeds(name):
    for p in seed_files(name):
        if ROOT in p.parents:
            TARGETS[name](p.read_bytes())


def test_hypothesis_profiles_are_registered():
    ci, nightly = settings.get_profile("ci"), settings.get_profile("nightly")
    assert ci.derandomize and not nightly.derandomize
    assert nightly.max_examples > ci.max_examples and nightly.deadline is not None
