"""Interactions: reports."""
