"""dumpkit test suite."""
