"""Interactions: every contact on every channel, purchases, complaints and service levels, surveys."""
