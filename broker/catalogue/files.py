"""Reading catalogue files (YAML or JSON) into a validated `CatalogueFile`.

YAML anchors may be set but aliases (`*name`) are refused: a few lines of aliases can stand for
millions of nodes (the "billion laughs"), and a catalogue has no need to share nodes. A key
given twice in one mapping is refused too (both parsers would silently keep the last value).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from broker.catalogue.schema import CatalogueFile
from broker.errors import CatalogueInvalid

MAX_BYTES = 5 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (before they are expanded) and repeated keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<`: its keys may be overridden, as YAML's merge key defines
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # refused by the constructor itself, with its own message
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r:.60} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        repeated = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"the key {repeated!r:.60} appears twice")
    return result


def parse_catalogue(text: str, *, name: str = "catalogue") -> CatalogueFile:
    """Parse and validate catalogue text; CatalogueInvalid lists every problem found."""
    if len(text) > MAX_BYTES:
        raise CatalogueInvalid(f"{name} is longer than {MAX_BYTES} characters.")
    try:
        if name.endswith(".json"):
            data = json.loads(text, object_pairs_hook=_no_repeated_keys)
        else:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    # ValueError: a date such as 2026-02-30, or an integer of more than 4300 digits, fails in
    # the constructor; RecursionError: nesting deeper than the parsers' recursion allows.
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise CatalogueInvalid(f"{name} is not valid YAML or JSON: {reason}") from None
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
