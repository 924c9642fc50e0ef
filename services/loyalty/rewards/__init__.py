"""Rewards: the catalogue members burn points on, two-phase redemptions (reserve → confirm or
cancel/expire) with unique voucher codes, and the partner network (accrual and redemption partners,
each with its own liability accounts in the ledger)."""
