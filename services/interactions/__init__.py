"""Interactions: every contact on every channel, purchases, complaints with service levels, surveys, timeline."""
