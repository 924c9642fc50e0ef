"""The gateway's authentication: users, clients, API keys, member logins, tokens, keys, audit log."""
