"""Rendering pages: Jinja2 with autoescaping, texts in the page's language."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from broker.web.i18n import translator

_env = Environment(
    loader=PackageLoader("broker.web", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
)


def render(
    template: str, *, language: str, title: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """An HTML page in `language`; `title` is translated; `person` defaults to nobody."""
    _ = translator(language)
    context.setdefault("person", None)
    html = _env.get_template(template).render(lang=language, _=_, title=_(title), **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response
