"""Reading catalogue files (YAML or JSON) into a validated `CatalogueFile`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from broker.catalogue.schema import CatalogueFile
from broker.errors import CatalogueInvalid

MAX_BYTES = 5 * 1024 * 1024


def parse_catalogue(text: str, *, name: str = "catalogue") -> CatalogueFile:
    """Parse and validate catalogue text; CatalogueInvalid lists every problem found."""
    try:
        data = yaml.safe_load(text) if not name.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise CatalogueInvalid(f"{name} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogueInvalid(f"{name} must hold a mapping with services, categories, ...")
    try:
        return CatalogueFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise CatalogueInvalid(
            f"{name} has {len(problems)} problem(s); nothing was loaded.", problems
        ) from None


def read_catalogue(path: Path) -> CatalogueFile:
    """Read and validate a catalogue file from disk."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CatalogueInvalid(f"{path} is larger than {MAX_BYTES} bytes.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueInvalid(f"{path} cannot be read: {exc}") from None
    return parse_catalogue(text, name=str(path))


def demo_catalogue_path() -> Path:
    """The demo catalogue shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "demo" / "catalogue.yaml"
