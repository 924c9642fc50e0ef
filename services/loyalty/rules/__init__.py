"""Programs and rules: earning rules (multipliers, product bonuses, event bonuses, caps), tiers and
referrals. See `engine` for the order rules are evaluated in."""
