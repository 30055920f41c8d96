"""The webhook receiver: a Starlette ASGI app (served by uvicorn: `supplybus serve webhook`).

``POST /v1/events/{EventType}`` with one canonical event as JSON (a line of ``publish --file``)
and the headers ``X-Supplybus-Delivery``, ``X-Supplybus-Timestamp``, ``X-Supplybus-Signature``.
Checks, in order, each with its answer (docs/webhook.md):

- Content-Length over SUPPLYBUS_WEBHOOK_MAX_BYTES: 413 (before anything is read);
- SUPPLYBUS_WEBHOOK_MAX_CONCURRENCY requests in hand already: 429 with Retry-After;
- the body, streamed, over the limit: 413;
- signature, then timestamp (``signature.verify``): 401 ``{"error": "signature"|"timestamp"}``;
- delivery id missing or malformed: 400; an event type the schemas do not know: 404;
- the body invalid: 422 with one entry per field error;
- the delivery and its event written to the outbox in one transaction: 202 with the event id;
  a delivery seen before: 200 with the original event id, nothing written; its delivery id
  with another body: 409; the database unreachable or failing: 503 with Retry-After.

Never 202 unless the transaction committed. Logs are JSON lines (no body, secret or header
values); ``correlation_id`` is the event's, or the delivery id before the body is parsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from supplybus.config import Settings
from supplybus.errors import DatabaseUnavailable, TransientError, ValidationError
from supplybus.events.catalog import EventCatalog
from supplybus.producers.webhook import signature as sig
from supplybus.producers.webhook.intake import DELIVERY_HEADER, Intake, delivery_id_ok
from supplybus.producers.webhook.metrics import WebhookMetrics

log = logging.getLogger("supplybus.webhook")
RETRY_AFTER_BUSY_S = 1
RETRY_AFTER_DOWN_S = 5


@dataclass
class _Request:
    """What is known of a request so far, for its answer, metrics and log line."""

    delivery_id: str | None
    event_type: str | None = None
    started: float = field(default_factory=time.perf_counter)
    event_id: str | None = None
    correlation_id: str | None = None


class WebhookApp:
    """The receiver's state: settings, secrets, the intake and the concurrency gate."""

    def __init__(
        self,
        settings: Settings,
        metrics: WebhookMetrics,
        *,
        catalog: EventCatalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.secrets = settings.webhook_secret_list
        self.metrics = metrics
        self.clock = clock
        self.intake = Intake(settings, catalog or EventCatalog.from_settings(settings))
        self.in_flight = 0  # only touched on the event loop: no lock needed

    async def receive(self, request: Request) -> Response:
        raw_id = request.headers.get(DELIVERY_HEADER)
        req = _Request(raw_id if delivery_id_ok(raw_id) else None)
        limit = self.settings.webhook_max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return self._reject(req, 413, "too_large", {"limit_bytes": limit})
        if self.in_flight >= self.settings.webhook_max_concurrency:
            return self._reject(req, 429, "busy", retry_after=RETRY_AFTER_BUSY_S)
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            return await self._handle(request, req, limit)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def _handle(self, request: Request, req: _Request, limit: int) -> Response:
        try:
            body = await _read(request, limit)
        except ClientDisconnect:  # the sender is gone before its body was read: nothing stored
            return self._reject(req, 400, "disconnected")
        if body is None:
            return self._reject(req, 413, "too_large", {"limit_bytes": limit})
        stamp = request.headers.get(sig.TIMESTAMP_HEADER)
        signed = request.headers.get(sig.SIGNATURE_HEADER, "")
        verdict = sig.verify(
            self.secrets,
            stamp,
            signed,
            body,
            now=self.clock(),
            tolerance_s=self.settings.webhook_tolerance_s,
        )
        if verdict != "ok":
            return self._reject(req, 401, verdict)
        if req.delivery_id is None:
            detail = f"{DELIVERY_HEADER}: 1 to 200 visible ASCII characters"
            return self._reject(req, 400, "delivery_id", {"detail": detail})
        event_type = request.path_params["event_type"]
        if not self.intake.knows(event_type):
            return self._reject(req, 404, "unknown_type", {"detail": "unknown event type"})
        req.event_type = event_type
        try:
            receipt = await run_in_threadpool(
                self.intake.accept, event_type, req.delivery_id, body, signed
            )
        except ValidationError as exc:
            errors = [_field(e.path, e.expected, e.got) for e in exc.errors]
            fields = ",".join(e["field"] or "<event>" for e in errors)
            return self._reject(req, 422, "invalid", {"errors": errors}, note=f"fields={fields}")
        except (DatabaseUnavailable, TransientError, psycopg.Error) as exc:
            return self._reject(
                req, 503, "unavailable", retry_after=RETRY_AFTER_DOWN_S, note=_error_name(exc)
            )
        req.event_id, req.correlation_id = receipt.event_id, receipt.correlation_id
        answer = {"event_id": receipt.event_id, "delivery_id": req.delivery_id}
        if receipt.outcome == "conflict":
            detail = "this delivery id was accepted before with another body"
            return self._reject(req, 409, "conflict", answer | {"detail": detail})
        if receipt.outcome == "duplicate":
            self.metrics.duplicates.inc()
            return self._answer(req, 200, {"status": "duplicate", **answer}, "duplicate")
        self.metrics.accepted.labels(event_type).inc()
        stamp_s = sig.parse_timestamp(stamp)
        if stamp_s is not None:
            self.metrics.lag.observe(max(0.0, self.clock() - stamp_s))
        return self._answer(req, 202, {"status": "accepted", **answer}, "accepted")

    def _reject(
        self,
        req: _Request,
        status: int,
        reason: str,
        extra: dict[str, Any] | None = None,
        *,
        retry_after: int | None = None,
        note: str = "",
    ) -> Response:
        self.metrics.rejected.labels(reason).inc()
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return self._answer(req, status, {"error": reason, **(extra or {})}, reason, headers, note)

    def _answer(
        self,
        req: _Request,
        status: int,
        content: dict[str, Any],
        outcome: str,
        headers: dict[str, str] | None = None,
        note: str = "",
    ) -> Response:
        elapsed = time.perf_counter() - req.started
        self.metrics.duration.observe(elapsed)
        level = (
            logging.INFO if status < 400 else logging.ERROR if status >= 500 else logging.WARNING
        )
        log.log(
            level,
            "webhook %s %s delivery=%s type=%s %.1fms%s",
            status,
            outcome,
            req.delivery_id or "-",
            req.event_type or "-",
            elapsed * 1000,
            f" {note}" if note else "",
            extra={
                "event_id": req.event_id,
                "correlation_id": req.correlation_id or req.event_id or req.delivery_id,
            },
        )
        return JSONResponse(content, status_code=status, headers=headers)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "in_flight": self.in_flight})

    def close(self) -> None:
        self.intake.close()


async def _read(request: Request, limit: int) -> bytes | None:
    """The body, or None once it grows past ``limit`` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _field(path: str, expected: str, got: object) -> dict[str, Any]:
    return {"field": path, "expected": expected, "got": None if got is None else str(got)}


def _error_name(exc: BaseException) -> str:
    """The class (and SQLSTATE) of a database error: never its text, which may hold values."""
    state = getattr(exc, "sqlstate", None)
    return f"error={type(exc).__name__}" + (f" sqlstate={state}" if state else "")


def create_app(
    settings: Settings,
    metrics: WebhookMetrics,
    *,
    catalog: EventCatalog | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI app; its ``state.webhook`` is the WebhookApp (close it when done)."""
    receiver = WebhookApp(settings, metrics, catalog=catalog, clock=clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            receiver.close()

    app = Starlette(
        routes=[
            Route("/v1/events/{event_type}", receiver.receive, methods=["POST"]),
            Route("/healthz", receiver.health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.webhook = receiver
    return app
