"""One atheris harness process: ``python -m fuzz.harness TARGET [libFuzzer options] CORPUS...``.

dumpkit is imported whole under atheris' instrumentation (every submodule, so code reached
through lazy imports is covered too); then libFuzzer drives ``fuzz.targets.TARGETS[TARGET]``.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys


def _import_all() -> None:
    import dumpkit

    for info in pkgutil.walk_packages(dumpkit.__path__, prefix="dumpkit."):
        if info.name.startswith("dumpkit.backends") or info.name.endswith("__main__"):
            continue                      # optional Windows-only back ends; the CLI entry point
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass


def main() -> None:
    import atheris

    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m fuzz.harness TARGET [libFuzzer options] [CORPUS_DIR...]")
    name = sys.argv.pop(1)
    with atheris.instrument_imports(include=["dumpkit"]):
        _import_all()
    from fuzz.targets import TARGETS

    target = TARGETS[name]

    def one(data: bytes) -> None:
        target(data)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
