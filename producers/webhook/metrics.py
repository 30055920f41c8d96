"""Prometheus metrics of the webhook receiver, on the registry of ``supplybus.metrics.Metrics``.

Names (prefixed ``supplybus_webhook_``):
- ``accepted_total``         deliveries made durable (in the outbox), by event type
- ``duplicates_total``       deliveries seen before: nothing written, the original id answered
- ``rejected_total``         refused deliveries by reason: signature, timestamp, too_large,
  busy, delivery_id, unknown_type, invalid, conflict, unavailable (the database),
  disconnected (the sender left before its body was read)
- ``in_flight``              requests being handled now (at most SUPPLYBUS_WEBHOOK_MAX_CONCURRENCY)
- ``request_seconds``        time from request to answer
- ``delivery_lag_seconds``   the signed timestamp to the delivery being durable (the lag)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REASONS = (
    "signature",
    "timestamp",
    "too_large",
    "busy",
    "delivery_id",
    "unknown_type",
    "invalid",
    "conflict",
    "unavailable",
    "disconnected",
)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.accepted = Counter(
            "supplybus_webhook_accepted", "Deliveries made durable", ("event_type",), registry=r
        )
        self.duplicates = Counter(
            "supplybus_webhook_duplicates", "Deliveries seen before (nothing written)", registry=r
        )
        self.rejected = Counter(
            "supplybus_webhook_rejected", "Deliveries refused, by reason", ("reason",), registry=r
        )
        for reason in REASONS:  # every reason is exported from the start, at 0
            self.rejected.labels(reason)
        self.in_flight = Gauge("supplybus_webhook_in_flight", "Requests in hand", registry=r)
        self.duration = Histogram(
            "supplybus_webhook_request_seconds",
            "Request to answer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.lag = Histogram(
            "supplybus_webhook_delivery_lag_seconds",
            "Signed timestamp to durable",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
