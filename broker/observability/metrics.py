"""Prometheus metrics: what was released or refused, how fast requests were answered, and the
state of the audit log and the notification outbox.

Counters and the latency histogram are kept by prometheus_client in this process. When several
worker processes serve the broker, set PROMETHEUS_MULTIPROC_DIR to an empty directory that
all of them share (before they start): prometheus_client then writes the values to files there
and any worker's scrape sums every worker's. The gauges read the database at scrape time, so
any worker answers the truth without that.

Labels never hold identifiers of persons or consents: the category (a catalogue code), the
outcome, the denial reason, the method, the route template (`/v1/me/consents/{consent_id}`,
never the path itself) and the status class.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import col, select

from broker.storage import transaction
from broker.storage.tables import LogCheckpoint, LogHead, NotificationOutbox

Outcome = Literal["released", "denied", "failed"]

RELEASES = Counter(
    "omadata_releases",
    "Data release requests by category and outcome (released, denied, failed).",
    ["category", "outcome"],
    registry=None,
)
DENIALS = Counter(
    "omadata_release_denials",
    "Refused releases by the decision's reason.",
    ["reason"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "omadata_http_request_duration_seconds",
    "Time to answer HTTP requests, by method, route template and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
_OWN = (RELEASES, DENIALS, HTTP_DURATION)


def count_release(category: str, outcome: Outcome, reason: str | None = None) -> None:
    """Count one release request's outcome; a denial also by its reason."""
    RELEASES.labels(category=category, outcome=outcome).inc()
    if reason is not None:
        DENIALS.labels(reason=reason).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record how long one HTTP request took; `route` must be a template, not a path."""
    HTTP_DURATION.labels(method=method, route=route, status=f"{status // 100}xx").observe(seconds)


class DatabaseGauges(Collector):
    """Gauges read from the database when scraped: log size, checkpoint age, outbox backlog."""

    def __init__(self, engine: Engine, now: datetime) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterable[Metric]:
        """The three gauges as they are in the database now."""
        with transaction(self.engine, readonly=True) as session:
            head = session.get(LogHead, 1)
            signed = session.exec(select(func.max(LogCheckpoint.signed_at))).one()
            pending = session.exec(
                select(func.count())
                .select_from(NotificationOutbox)
                .where(col(NotificationOutbox.next_attempt_at).is_not(None))
            ).one()
        size = GaugeMetricFamily("omadata_log_entries", "Entries in the audit log.")
        size.add_metric([], float(head.size if head is not None else 0))
        yield size
        age = GaugeMetricFamily(
            "omadata_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed."
        )
        if signed is not None:
            when = signed if signed.tzinfo else signed.replace(tzinfo=UTC)
            age.add_metric([], max(0.0, (self.now - when).total_seconds()))
        yield age
        backlog = GaugeMetricFamily(
            "omadata_notifications_pending", "Notifications still to be delivered."
        )
        backlog.add_metric([], float(pending))
        yield backlog


def exposition(engine: Engine, now: datetime, multiprocess_dir: str | None = None) -> bytes:
    """The Prometheus text exposition: this process's (or, with a multiprocess directory,
    every worker's) counters and histogram, and the database gauges."""
    multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir:
        MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        for metric in _OWN:
            registry.register(metric)
    registry.register(DatabaseGauges(engine, now))
    return generate_latest(registry)
