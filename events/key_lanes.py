"""A key's events never change lanes (ADR 0009): the guard publishers apply.

Kafka orders a key's events within one partition of one topic; a stream's routine topic and its
``.critical`` lane are two topics, so a key whose events switched lanes could be applied out of
order (a CRITICAL event overtaking the ROUTINE events of its key still queued). Priority is
therefore a property of the business transaction (the key): events caused by an event inherit
its priority (``envelope.caused_by``), and a publisher refuses an event whose key it has seen on
the other lane of the same stream.
"""

from __future__ import annotations

from collections import OrderedDict

from supplybus.errors import FieldError
from supplybus.events.topics import LaneName, TopicCatalog


class KeyLanes:
    """The lane of each (stream, key) seen, most recent ``capacity`` keys (least recently
    used forgotten first)."""

    def __init__(self, topics: TopicCatalog, capacity: int = 100_000) -> None:
        self.topics = topics
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, bytes], LaneName] = OrderedDict()

    def check(self, topic: str, key: bytes) -> FieldError | None:
        """None when ``key`` may go to ``topic`` (and remember it); else what is wrong."""
        spec = self.topics.topic(topic)
        seen = (spec.stream, key)
        earlier = self._seen.get(seen)
        if earlier is not None and earlier != spec.lane:
            return FieldError(
                "envelope.priority",
                f"the {earlier} lane of stream {spec.stream}, where key "
                f"{key.decode(errors='replace')!r} was published before (a key's events never "
                "change lanes: priority belongs to the business transaction)",
                spec.lane,
            )
        self._seen[seen] = spec.lane
        self._seen.move_to_end(seen)
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return None

    def fork(self) -> KeyLanes:
        """A copy to check a batch against, adopted only if the whole batch passes."""
        copy = KeyLanes(self.topics, self.capacity)
        copy._seen = OrderedDict(self._seen)
        return copy

    def adopt(self, other: KeyLanes) -> None:
        self._seen = other._seen
