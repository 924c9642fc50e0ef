"""The platform's shared kernel: settings, persistence, event envelope, outbox/inbox, bus, HTTP plumbing.

Each service writes only its own domain; everything about getting an event from one service's
transaction to another service's transaction, exactly once in effect, lives here.
"""
