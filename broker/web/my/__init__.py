"""The person's own pages under /my: consents, who used the data, acting for others, the
download of everything, and the language; server-rendered, every action works without
JavaScript (static/verify.js only adds the in-browser check of log entries)."""

from fastapi import APIRouter

from broker.web.my import activity, consents, export, people

router = APIRouter(include_in_schema=False)
for _part in (consents.router, activity.router, people.router, export.router):
    router.include_router(_part)

__all__ = ["router"]
