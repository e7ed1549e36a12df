"""The signed, append-only audit log."""
