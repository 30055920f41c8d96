"""The dead-letter budget: when dead letters stop meaning "a few bad records".

Sporadic poison among good records flows on; a processor bug, a producer deployed before its
consumer's schema, or a wrong topic blames every record: past the budget the batch is not
committed, the lane halts (metric and log), and a restart resumes at that batch. The operator
raises the budget (``supplybus run --dead-letter-budget``) or fixes the cause.

Per topic partition, over its records in offset order: more than ``max_consecutive`` dead
letters in a row, or more than ``max_in_window`` among its last ``window`` records, exhaust it. The
state advances only when the batch commits (``Window.after`` is pure; the lane keeps the
result only after the transaction committed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeadLetterBudget:
    """Limits per processor and topic partition; the defaults stop a bug within a handful of
    records."""

    max_consecutive: int = 5
    max_in_window: int = 100
    window: int = 1000

    def __post_init__(self) -> None:
        if self.max_consecutive < 1 or self.max_in_window < 1 or self.window < 1:
            raise ValueError("dead-letter budget limits must be >= 1")

    def describe(self) -> str:
        return (
            f"{self.max_consecutive} dead letters in a row, or {self.max_in_window} in the "
            f"last {self.window} records"
        )


@dataclass(frozen=True)
class Window:
    """The recent history of one topic: consecutive dead letters and the last records."""

    consecutive: int = 0
    recent: tuple[bool, ...] = field(default=())  # True = dead-lettered, newest last

    def after(self, dead_flags: Iterable[bool], budget: DeadLetterBudget) -> Window:
        consecutive = self.consecutive
        recent: deque[bool] = deque(self.recent, maxlen=budget.window)
        for dead in dead_flags:
            consecutive = consecutive + 1 if dead else 0
            recent.append(dead)
            if consecutive > budget.max_consecutive:
                break
        return Window(consecutive, tuple(recent))

    def exhausted(self, budget: DeadLetterBudget) -> bool:
        return self.consecutive > budget.max_consecutive or sum(self.recent) > budget.max_in_window


def spend(
    windows: Mapping[str, Window],
    records: Mapping[str, list[bool]],
    budget: DeadLetterBudget,
) -> tuple[dict[str, Window], str | None]:
    """The windows after a batch (``records``: dead flags per topic partition, named
    ``topic[partition]``, in offset order), and the first one whose budget the batch
    exhausts (None when it fits)."""
    after = dict(windows)
    for topic, flags in records.items():
        window = after.get(topic, Window()).after(flags, budget)
        after[topic] = window
        if window.exhausted(budget):
            return after, topic
    return after, None
