"""Loyalty: a double-entry points ledger, earning rules, rewards and redemption, tiers, expiry."""
