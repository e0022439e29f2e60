"""Replays every input the atheris harnesses found (fuzz/crashers/<target>/) and the seeds of each
harness: each must run to completion without an exception other than dumpkit's own (the targets
swallow DumpError) and quickly.  A crasher committed here stays fixed.
"""
from __future__ import annotations

import time
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


@pytest.mark.parametrize("path", REGRESSIONS, ids=[f"{p.parent.name}/{p.name[:24]}" for p in REGRESSIONS])
def test_crasher_replays_cleanly(path: Path):
    t = time.perf_counter()
    replay(path.parent.name, path.read_bytes())
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("name", [n for n in TARGETS if n != "dump"])
def test_targets_accept_their_repository_seeds(name):
    for p in seed_files(name):
        if ROOT in p.parents:
            TARGETS[name](p.read_bytes())


def test_hypothesis_profiles_are_registered():
    ci, nightly = settings.get_profile("ci"), settings.get_profile("nightly")
    assert ci.derandomize and not nightly.derandomize
    assert nightly.max_examples > ci.max_examples and nightly.deadline is not None
