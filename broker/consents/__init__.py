"""Consents: give, refuse, withdraw and revoke them, read their history, decide releases."""
