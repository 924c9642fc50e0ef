"""Loyalty's reports: outstanding liability, points expiring, issue vs redemption, penetration,
active members — JSON figures or PNG/SVG charts (see `routes`)."""
