"""On-disk layouts turned into typed records (headers, triage sections)."""
