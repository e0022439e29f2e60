"""Analysis: the knowledge base, triage rules, followup selection, buckets and verdicts."""
