"""Optional backends: other ways to reach a crash than reading the dump file ourselves."""
