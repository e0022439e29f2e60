"""Physical layers (runs, bitmap rank index), x64 translation, triage sparse memory."""
