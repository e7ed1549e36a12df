"""The HTTP API: the app factory, routers, and the mapping of domain errors to problems."""

from broker.api.app import create_app

__all__ = ["create_app"]
