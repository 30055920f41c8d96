"""Measuring and printing: rates, medians of repeated runs, ratios against baselines."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table


@dataclass
class Section:
    """One benchmark's rows: (what, rate per second, unit, note)."""

    title: str
    rows: list[tuple[str, float, str, str]] = field(default_factory=list)

    def add(self, what: str, rate: float, unit: str = "events/s", note: str = "") -> float:
        self.rows.append((what, rate, unit, note))
        return rate

    def print(self, console: Console) -> None:
        table = Table("measure", "rate", "unit", "note", title=self.title, title_justify="left")
        for what, rate, unit, note in self.rows:
            table.add_row(what, f"{rate:,.0f}" if rate >= 100 else f"{rate:,.2f}", unit, note)
        console.print(table)


def rate(count: int, work: Callable[[], object], repeats: int = 5) -> float:
    """Median rate (count per second) over ``repeats`` runs of ``work``."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"
