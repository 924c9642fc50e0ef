"""Interactions: surveys."""
