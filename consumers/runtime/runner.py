"""Running processors: a routine and a critical lane per processor, the outbox relay, signals.

SIGTERM or SIGINT: every lane finishes its batch, commits, and leaves its group. With
``until_idle``, the runner stops once every lane holds partitions, has no batch in hand or in
retry, and has seen no record for that many seconds, and the outbox is drained (idleness is
observed, never inferred from the broker's high watermark). A lane with no partitions is not
idle (another member may hold them): past ``assignment_timeout`` the run exits 1 naming it.

Exit codes: 0 done; 1 a lane or the relay failed, or a lane got no partitions in time; 3 a
stop came while a batch waited on a retry, so records were left unapplied (consumed again at
the next start).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime.identity import Registration, register
from supplybus.consumers.runtime.lane import Lane
from supplybus.consumers.runtime.priority import PriorityGate
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.retention import ScheduledPrune
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.topics import LaneName
from supplybus.metrics import Metrics
from supplybus.producers.relay import OutboxRelay

log = logging.getLogger("supplybus.runtime")
ASSIGNMENT_WARNING_S = 30.0
STUCK_GROUP = (
    "consumer group(s) %s got no assignment after %.0f s: another member may still hold the "
    "partitions (it is evicted after the session timeout), or, on the embedded Tansu broker, "
    "the group is stuck (ADR 0004): `supplybus down && supplybus up` resets the broker; the "
    "idempotency ledger makes the re-processing that follows safe"
)
NO_PARTITIONS = (
    "consumer group(s) %s held no partitions after %.0f s, so this run cannot tell whether "
    "work is left (another member of the group holds the partitions, or the group is stuck): "
    "stopping without calling it idle"
)


def lane_topics(catalog: EventCatalog, processor: Processor) -> dict[LaneName, list[str]]:
    """The topics of each lane: every catalog topic carrying an event type it consumes."""
    lanes: dict[LaneName, list[str]] = {"routine": [], "critical": []}
    for event_type in processor.consumes:
        routine = catalog.topics.topic_for(event_type)
        for topic in catalog.topics.lanes_of(routine.stream):
            if topic.name not in lanes[topic.lane]:
                lanes[topic.lane].append(topic.name)
    return lanes


class Background(Protocol):
    """A loop that runs beside the lanes (e.g. the PO dispatcher) until ``stop`` is set; it
    keeps an unexpected error in ``error`` (and sets ``stop``)."""

    error: BaseException | None

    def run(self, stop: threading.Event) -> None: ...

    def drained(self) -> bool:
        """Nothing left for it to do now (``until_idle``)."""
        ...


@dataclass
class Runner:
    settings: Settings
    processors: Sequence[Processor]
    relay: bool = False
    until_idle: float | None = None
    metrics: Metrics = field(default_factory=Metrics)
    stop: threading.Event = field(default_factory=threading.Event)
    lanes: list[Lane] = field(default_factory=list)
    relay_worker: OutboxRelay | None = None
    signals: bool = True
    #: The interpreter's thread switch interval while running. A lane decodes the next batch
    #: while its database thread waits for PostgreSQL; with the default 5 ms the database
    #: thread waits that long for the GIL after each round trip (measured: +8-12 % events/s).
    switch_interval: float | None = 0.001
    #: Stop (exit code 1) when a lane holds no partitions after this many seconds (None: wait).
    assignment_timeout: float | None = None
    unassigned: list[str] = field(default_factory=list)
    #: Register the processors of this run that are not registered yet even where one looks
    #: like a renamed registered processor (`supplybus run --new`; ADR 0007).
    new: bool = False
    registration: Registration | None = None
    #: Loops run beside the lanes, in threads of their own (`supplybus run po-dispatch`).
    background: Sequence[Background] = ()

    def start(self) -> list[threading.Thread]:
        catalog = EventCatalog.from_settings(self.settings)
        gate = PriorityGate()
        for processor in self.processors:
            unknown = [e for e in processor.consumes if e not in catalog.store.by_type]
            if unknown:
                raise ConfigError(f"processor {processor.name}: unknown event types {unknown}")
        # the stored identity: start position, accidental-rename guard, "a runner is live" lock
        self.registration = register(self.settings, self.processors, new=self.new)
        for processor in self.registration.processors:
            if processor.setup is not None:
                with connect(self.settings) as conn:
                    processor.setup(conn)
            for lane, topics in lane_topics(catalog, processor).items():
                if topics:
                    self.lanes.append(
                        Lane(
                            self.settings,
                            processor,
                            lane,
                            topics,
                            catalog,
                            self.metrics,
                            self.stop,
                            gate,
                        )
                    )
        threads = [
            threading.Thread(target=lane.run, name=f"{lane.group_id}", daemon=True)
            for lane in self.lanes
        ]
        if self.relay:
            self.relay_worker = OutboxRelay(self.settings, self.metrics)
            threads.append(
                threading.Thread(
                    target=self.relay_worker.run, args=(self.stop,), name="relay", daemon=True
                )
            )
        for loop in self.background:
            threads.append(
                threading.Thread(
                    target=loop.run, args=(self.stop,), name=type(loop).__name__, daemon=True
                )
            )
        if self.settings.prune_interval_s > 0:  # retention (ADR 0008); checks its horizons
            threads.append(ScheduledPrune(self.settings, self.stop).thread())
        for thread in threads:
            thread.start()
        return threads

    def run(self) -> int:
        """Run until a signal, an error, or idleness (with ``until_idle``); returns an exit code."""
        self._install_signals()
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
        started = time.monotonic()
        warned = False
        threads: list[threading.Thread] = []
        try:
            threads = self.start()
            while not self.stop.wait(0.2):
                if self.until_idle is not None and self._idle():
                    log.info("idle for %.1fs: stopping", self.until_idle)
                    self.stop.set()
                waiting = [lane.group_id for lane in self.lanes if not lane.stats.partitions]
                elapsed = time.monotonic() - started
                if waiting and not warned and elapsed > ASSIGNMENT_WARNING_S:
                    warned = True
                    log.warning(STUCK_GROUP, ", ".join(waiting), elapsed)
                if waiting and self.assignment_timeout and elapsed > self.assignment_timeout:
                    self.unassigned = waiting
                    log.error(NO_PARTITIONS, ", ".join(waiting), elapsed)
                    self.stop.set()
        finally:
            self.stop.set()
            deadline = time.monotonic() + 10
            for thread in threads:
                thread.join(max(0.1, deadline - time.monotonic()))
            if self.registration is not None:
                self.registration.close()  # the runner is no longer live
        failed = [lane for lane in self.lanes if lane.error is not None]
        relay_failed = self.relay_worker is not None and self.relay_worker.error is not None
        background_failed = any(loop.error is not None for loop in self.background)
        if failed or relay_failed or background_failed or self.unassigned:
            return 1
        unapplied = {lane.group_id: lane.unapplied for lane in self.lanes if lane.abandoned}
        for lane in self.lanes:
            self.metrics.unapplied.labels(lane.processor.name, lane.lane).set(lane.unapplied)
        if unapplied:
            log.error(
                "stopped with records unapplied (%s): a stop came while the database or broker "
                "was unavailable; nothing past them was committed, and they are consumed again "
                "at the next start",
                ", ".join(f"{g}: {n}" for g, n in unapplied.items()),
            )
            return 3
        return 0

    def _idle(self) -> bool:
        """Nothing left to do: every lane holds partitions, has nothing in hand, saw nothing."""
        now = time.monotonic()
        wait = self.until_idle or 0.0
        quiet = all(
            lane.stats.partitions
            and not lane.stats.busy
            and now - lane.stats.last_record_at >= wait
            for lane in self.lanes
        )
        drained = self.relay_worker is None or (
            self.relay_worker.stats.rounds > 0 and self.relay_worker.stats.backlog == 0
        )
        return quiet and drained and all(loop.drained() for loop in self.background)

    def _install_signals(self) -> None:
        if not self.signals or threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: finishing the batch in hand, then leaving", signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
