"""Per-architecture packages (contexts, translation, trap frames, stack walking)."""
