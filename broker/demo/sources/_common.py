"""What both demo sources share: their synthetic data files, and serving from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI

Records = dict[str, dict[str, list[dict[str, Any]]]]
"""Subject at the source -> category code -> records (catalogue field name -> value)."""


def load_records(name: str) -> Records:
    """The synthetic records in the data file `name` beside this module."""
    data = yaml.safe_load((Path(__file__).parent / name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{name} holds no records")
    return data


def main(
    create_app: Callable[[str, str, str], FastAPI],
    *,
    audience: str,
    port: int,
    argv: Sequence[str] | None = None,
) -> None:
    """Parse `--broker`, `--host`, `--port` and serve the app until interrupted."""
    parser = argparse.ArgumentParser(description=f"A demo source service ({audience}).")
    parser.add_argument("--broker", default="http://127.0.0.1:8000", help="the broker's URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    args = parser.parse_args(argv)
    broker = str(args.broker).rstrip("/")
    app = create_app(broker, audience, f"{broker}/.well-known/jwks.json")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
