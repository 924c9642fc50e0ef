"""Benchmarks: figures for the platform's quality and speed, run by hand or by `make bench`."""
