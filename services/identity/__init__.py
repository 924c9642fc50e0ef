"""Identity: customer profiles, identifiers, matching and merging into golden records, consents, erasure."""
