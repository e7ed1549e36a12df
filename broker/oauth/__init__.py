"""OAuth 2.0 authorization server: clients, grants, tokens, and our RFC 9396 / 9449 extensions."""
