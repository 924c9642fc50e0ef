"""Authentication and authorisation shared by every service and the gateway.

`tokens` (JWT access tokens), `keys` (Ed25519 signing keys, JWKS), `policy` (the single place that
decides who may call what), `guard` (the app-level dependency enforcing it), `setup` (wiring a
service's verifier from its settings).
"""
