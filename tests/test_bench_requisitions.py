"""The requisition-to-PO bench section (issue 17, acceptance 5): its requisitions are valid and
auto-approved under the shipped policies, its percentiles are right, and the section runs end
to end on the real broker and database (counts only; timing is what `make bench` reports)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from supplybus.config import Settings
from supplybus.consumers.approvals.federation import load_policies
from supplybus.consumers.procurement.processor import route_of
from supplybus.consumers.procurement.validation import validate
from supplybus.errors import ConfigError
from supplybus.ops.bench import requisitions as bench
from tests.requisition_data import MASTER, SAMPLE, TODAY

OFFERS = bench.offers(SAMPLE, TODAY)
POLICIES = load_policies()
AUTO_LIMIT = Decimal(2500)


def test_offers_are_orderable_contract_prices_of_unrouted_categories() -> None:
    assert len(OFFERS) > 50
    for offer in OFFERS:
        item = MASTER.items[offer.item_id]
        assert item.orderable and item.category in bench.CATEGORIES
        assert MASTER.suppliers[offer.supplier_id].status == "ACTIVE"
        assert bench.ENTITY in MASTER.suppliers[offer.supplier_id].entity_ids
        assert offer.price <= bench.LINE_LIMIT


@hsettings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_every_drawn_requisition_validates_clean_and_is_auto_approved(seed: int) -> None:
    record = bench.draw(random.Random(seed), OFFERS, f"REQ-BENCH-{seed}")
    finding = validate(record, MASTER, TODAY)
    assert not finding.rejects and not finding.flags, finding.reasons
    assert record["total"]["amount"] < AUTO_LIMIT
    assert route_of(record, finding, POLICIES).auto_approved


@given(
    values=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200),
    q1=st.floats(0.01, 100),
    q2=st.floats(0.01, 100),
)
def test_percentile_is_a_sample_value_monotone_in_q(
    values: list[float], q1: float, q2: float
) -> None:
    low, high = sorted((q1, q2))
    assert bench.percentile(values, low) in values
    assert bench.percentile(values, low) <= bench.percentile(values, high)
    assert bench.percentile(values, 100) == max(values)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert [bench.percentile(values, q) for q in (1, 50, 90, 99, 100)] == [1, 50, 90, 99, 100]
    with pytest.raises(ValueError, match="0 < q <= 100"):
        bench.percentile([], 50)


def test_rate_and_duration_from_the_environment_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(bench.SECONDS_ENV, "2.5")
    assert bench._env_number(bench.SECONDS_ENV, 30) == 2.5
    monkeypatch.setenv(bench.SECONDS_ENV, "soon")
    with pytest.raises(
        ConfigError, match=f"{bench.SECONDS_ENV}: expected a number > 0, got 'soon'"
    ):
        bench._env_number(bench.SECONDS_ENV, 30)
    monkeypatch.setenv(bench.RATE_ENV, "0")
    with pytest.raises(ConfigError, match=bench.RATE_ENV):
        bench.run(base=Settings())  # refused before any service is touched


def test_section_runs_end_to_end_and_every_requisition_becomes_purchase_orders(
    settings: Settings,
) -> None:
    section = bench.run(rate=10, seconds=2, base=settings)
    rows = {what.strip(): (value, unit, note) for what, value, unit, note in section.rows}
    assert rows["requisitions published"][:2] == (20, "requisitions")
    ordered, _, note = rows["requisitions ORDERED (PO issued)"]
    assert ordered == 20 and note.startswith("all 20;")
    for name in ("latency p50", "latency p90", "latency p99", "latency max"):
        assert rows[name][0] > 0 and rows[name][1] == "ms"
    assert rows["latency p50"][0] <= rows["latency p99"][0] <= rows["latency max"][0]
    assert rows["goal p99 < 2 s"][2] in ("met", "NOT met")
