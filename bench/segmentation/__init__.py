"""Segmentation benchmarks: real-time feature updates and the full recompute."""
