"""Persons (data subjects), their sign-in identities, and who may act for whom."""
