"""Storage: the SQLModel tables, the engine, and one transaction per use case."""

from broker.storage.database import create_db_engine, transaction

__all__ = ["create_db_engine", "transaction"]
