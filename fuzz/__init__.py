"""Coverage-guided fuzzing of dumpkit's input formats (atheris; ``pip install -e '.[fuzz]'``).

``python -m fuzz.run`` runs every harness for a time budget; ``python -m fuzz.run pe cab --seconds 60``
runs some.  Crashers land in ``fuzz/crashers/<target>/`` and are replayed by the default test suite.
"""
