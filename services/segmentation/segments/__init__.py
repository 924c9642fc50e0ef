"""Segments: a JSON rule language over customer features and facts, compiled to SQL, kept current in
real time (after each event) and in batch (on save, and on a schedule for time-relative rules)."""
