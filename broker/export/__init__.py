"""Take my data with me: one JSON archive of everything the broker holds about a person.

The format is documented in docs/export.md. Public surface: `build_archive`, `FORMAT`.
"""

from broker.export._archive import FORMAT, build_archive

__all__ = ["FORMAT", "build_archive"]
