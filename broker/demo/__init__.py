"""The demo: synthetic catalogue, source services and a consumer app, all on loopback."""

from pathlib import Path

CONNECTORS_FILE = Path(__file__).resolve().parent / "connectors.yaml"
"""How the broker reaches the demo sources (the default connectors file in development)."""
