"""Prometheus metrics of supplybus: every name in one place, on a registry passed explicitly.

Names (all prefixed ``supplybus_``):
- ``events_processed_total``     events applied, by processor, topic and event type
- ``events_duplicate_total``     events skipped by the idempotency ledger
- ``events_failed_total``        events that failed permanently (then dead-lettered)
- ``events_dead_lettered_total`` dead letters written, by processor, topic and error code
- ``events_emitted_total``       events written to the outbox by processors
- ``batch_duration_seconds``     time to apply one batch (transaction and offset commit)
- ``end_to_end_latency_seconds`` occurred_at to effects committed (1 in 8 events sampled)
- ``transient_retries_total``    retries after transient errors (database or broker down)
- ``outbox_backlog``             outbox rows not yet published (set by the relay)
- ``outbox_published_total``     outbox rows published by the relay
- ``outbox_parked``              outbox rows parked: they can never be published (alert on > 0)
- ``consumer_lag``               records behind the high watermark (approximate on Tansu)
- ``events_held_total``          events held behind a dead letter of their key (per-key order)
- ``held_keys`` / ``held_events`` / ``oldest_hold_age_seconds``  what is held now, per processor
- ``hold_alerts``                held keys past their processor's HoldAlert bound (an alert)
- ``lanes_halted_total``         lanes halted on purpose, by processor and reason (e.g. the
  dead-letter budget): an alert, the lane committed nothing past the halt
- ``lanes_unapplied_records``    records a stopped lane left unapplied (consumed again at start)
- ``po_deliveries_total``        purchase-order deliveries by outcome (delivered, retried,
  cancelled, failed: a permanent error such as a different file under the PO's name)
- ``po_delivery_alerts_total``   POs that waited for their outbound target past the alert time
- ``po_deliveries_overdue``      pending PO deliveries older than the alert time (alert on > 0)
- ``approvals_escalated_total``  approval steps escalated past their SLA by the sweep
- ``approvals_fallback``         approval steps nobody can decide (the fallback queue; alert on > 0)
- ``dead_letters_open``          open dead letters, by processor and error code (set every 30 s)
- ``dead_letter_oldest_age_seconds``  age of the oldest open dead letter (its first failure)
- ``dlq_replays_total``          dead letters replayed by `supplybus dlq replay`, by outcome
- ``ingest_accepted_total``      records taken in from a source (files, ...), by source, event type
- ``ingest_rejected_total``      records a source sent that were refused, by source and reason
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_EVENT = ("processor", "topic", "event_type")


class Metrics:
    """The supplybus metrics on their own registry (one per process, passed explicitly)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.processed = Counter("supplybus_events_processed", "Events applied", _EVENT, registry=r)
        self.duplicate = Counter(
            "supplybus_events_duplicate", "Events skipped as already applied", _EVENT, registry=r
        )
        self.failed = Counter(
            "supplybus_events_failed", "Events that failed permanently", _EVENT, registry=r
        )
        self.dead_lettered = Counter(
            "supplybus_events_dead_lettered",
            "Dead letters written",
            ("processor", "topic", "error_code"),
            registry=r,
        )
        self.emitted = Counter(
            "supplybus_events_emitted", "Events written to the outbox", ("processor",), registry=r
        )
        self.batch_duration = Histogram(
            "supplybus_batch_duration_seconds",
            "Time to apply one batch",
            ("processor", "lane"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.latency = Histogram(
            "supplybus_end_to_end_latency_seconds",
            "occurred_at to effects committed",
            ("processor", "lane"),
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.retries = Counter(
            "supplybus_transient_retries",
            "Retries after transient errors",
            ("processor",),
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "supplybus_outbox_backlog", "Outbox rows not yet published", registry=r
        )
        self.outbox_published = Counter(
            "supplybus_outbox_published", "Outbox rows published", registry=r
        )
        self.outbox_parked = Gauge(
            "supplybus_outbox_parked",
            "Outbox rows parked because they can never be published (set by the relay)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "supplybus_consumer_lag",
            "Records behind the high watermark (approximate on Tansu)",
            ("processor", "topic", "partition"),
            registry=r,
        )

        self.held = Counter(
            "supplybus_events_held",
            "Events held behind a dead letter of their key",
            ("processor",),
            registry=r,
        )
        self.held_keys = Gauge(
            "supplybus_held_keys", "Keys held behind dead letters", ("processor",), registry=r
        )
        self.held_events = Gauge(
            "supplybus_held_events", "Events held behind dead letters", ("processor",), registry=r
        )
        self.oldest_hold_age = Gauge(
            "supplybus_oldest_hold_age_seconds",
            "Age of the oldest held event",
            ("processor",),
            registry=r,
        )
        self.hold_alerts = Gauge(
            "supplybus_hold_alerts",
            "Held keys past their processor's bound (events or age)",
            ("processor",),
            registry=r,
        )
        self.lane_halted = Counter(
            "supplybus_lanes_halted",
            "Lanes halted on purpose (nothing committed past the halt)",
            ("processor", "reason"),
            registry=r,
        )
        self.unapplied = Gauge(
            "supplybus_lanes_unapplied_records",
            "Records a stopped lane left unapplied (consumed again at the next start)",
            ("processor", "lane"),
            registry=r,
        )
        self.po_deliveries = Counter(
            "supplybus_po_deliveries",
            "Purchase-order deliveries to the outbound target, by outcome",
            ("outcome",),
            registry=r,
        )
        self.po_alerts = Counter(
            "supplybus_po_delivery_alerts",
            "Purchase orders that waited for their outbound target past the alert time",
            registry=r,
        )
        self.po_overdue = Gauge(
            "supplybus_po_deliveries_overdue",
            "Pending purchase-order deliveries older than the alert time (set by the dispatcher)",
            registry=r,
        )
        self.approvals_escalated = Counter(
            "supplybus_approvals_escalated",
            "Approval steps escalated past their SLA by the sweep",
            registry=r,
        )
        self.approvals_fallback = Gauge(
            "supplybus_approvals_fallback",
            "Approval steps nobody can decide: the fallback queue (set by the sweep)",
            registry=r,
        )
        self.dead_letters_open = Gauge(
            "supplybus_dead_letters_open",
            "Open dead letters, by processor and error code",
            ("processor", "error_code"),
            registry=r,
        )
        self.dead_letter_oldest_age = Gauge(
            "supplybus_dead_letter_oldest_age_seconds",
            "Age of the oldest open dead letter (since its first failure)",
            registry=r,
        )
        self.dlq_replays = Counter(
            "supplybus_dlq_replays",
            "Dead letters replayed, by outcome (applied, already-applied, failed-again)",
            ("outcome",),
            registry=r,
        )

        self.ingest_accepted = Counter(
            "supplybus_ingest_accepted", "Records taken in", ("source", "event_type"), registry=r
        )
        self.ingest_rejected = Counter(
            "supplybus_ingest_rejected", "Records refused", ("source", "reason"), registry=r
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on 127.0.0.1:port (Prometheus text format)."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
