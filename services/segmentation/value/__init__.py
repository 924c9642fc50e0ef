"""Customer value, abandonment risk and loyalty-ladder stage ("Differentiate" in DOMAIN.md).

One computation serves both paths: the row-level rules (RFM scores against the current cut points,
historic CLV, tier against the current tier floors, risk, active/lapsed, ladder stage) are SQL
expressions over `customer_features` (`rfm.py`, `tiers.py`, `risk.py`, `ladder.py`, combined by
`service._apply`). The real-time path (`service.score_customers`)
runs them for a few customers after an event; the scheduled pass (`service.recompute_population`)
first recomputes the population-level figures (quintile cut points, the BG/NBD + Gamma-Gamma fit and
predicted CLV, the tier floors by rank) and then runs the very same statement for everyone.
"""
