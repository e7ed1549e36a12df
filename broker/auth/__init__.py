"""Who is asking: access tokens (RFC 9068 JWTs) signed with the broker's token keys."""
