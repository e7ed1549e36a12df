"""Take my data with me: a page that says what the archive holds, and the download itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from broker.api.deps import RuntimeDep
from broker.export import build_archive
from broker.storage import transaction
from broker.web.my.context import Viewer, html_errors, page, viewer_or_signin
from broker.web.my.texts import N_

router = APIRouter(include_in_schema=False)


@router.get("/my/export")
@html_errors
def export_page(request: Request, runtime: RuntimeDep) -> Response:
    """What the download holds, and the button to get it."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
    return page("my_export.html", viewer, title=N_("Download everything"), current="export")


@router.get("/my/export.json")
@html_errors
def export_download(request: Request, runtime: RuntimeDep) -> Response:
    """The archive of the person on screen as one JSON file (docs/export.md)."""
    now = datetime.now(UTC)
    settings = runtime.settings
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        archive = build_archive(
            session,
            runtime.keystore,
            viewer_id=viewer.person_id,
            person_id=viewer.subject_id,
            log_origin=settings.log_origin,
            broker_url=settings.effective_public_url,
            language=viewer.language,
            now=now,
        )
    name = f"omadata-{viewer.subject_id}-{now:%Y%m%d}.json"
    return Response(
        json.dumps(archive, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
