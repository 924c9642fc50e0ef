"""Interactions benchmarks: the customer timeline on a busy customer, and bulk ingestion."""
