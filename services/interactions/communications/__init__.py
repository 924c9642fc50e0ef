"""Interactions: communications."""
