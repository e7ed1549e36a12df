"""The public catalogue: who takes part, which data exists, for which purposes, on what terms."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from broker.api.deps import ReadSession
from broker.api.params import CodePath, IdPath
from broker.api.problems import documented
from broker.catalogue import service
from broker.catalogue.views import AgreementView, CategoryView, PurposeView, ServiceView

router = APIRouter(prefix="/v1", tags=["catalogue"], responses=documented(503))

_ONE = documented(404, 422)


@router.get("/services", summary="List integrated services")
def list_services(session: ReadSession) -> list[ServiceView]:
    return service.list_services(session)


@router.get("/services/{service_id}", summary="One integrated service", responses=_ONE)
def get_service(session: ReadSession, service_id: IdPath) -> ServiceView:
    return service.get_service(session, service_id)


@router.get("/categories", summary="List data categories and their fields")
def list_categories(session: ReadSession) -> list[CategoryView]:
    return service.list_categories(session)


@router.get("/categories/{code}", summary="One data category", responses=_ONE)
def get_category(session: ReadSession, code: CodePath) -> CategoryView:
    return service.get_category(session, code)


@router.get("/purposes", summary="List purposes of processing")
def list_purposes(session: ReadSession) -> list[PurposeView]:
    return service.list_purposes(session)


@router.get("/agreements", summary="List published data agreement versions")
def list_agreements(session: ReadSession) -> list[AgreementView]:
    return service.list_agreements(session)


@router.get(
    "/agreements/{agreement_id}",
    summary="The latest version of a data agreement, or the one asked for",
    responses=_ONE,
)
def get_agreement(
    session: ReadSession,
    agreement_id: IdPath,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> AgreementView:
    return service.get_agreement(session, agreement_id, version)
