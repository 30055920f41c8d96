"""Hypothesis strategies for canonical events."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from supplybus.events.domain_checks import UNITS_OF_MEASURE, gtin_check_digit

text_ids = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=24)
instants = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda d: d.replace(microsecond=d.microsecond))
quantities = st.decimals(
    min_value=Decimal("0.001"),
    max_value=Decimal("999999999.999"),
    places=3,
    allow_nan=False,
    allow_infinity=False,
)


def gtins() -> st.SearchStrategy[str]:
    return (
        st.sampled_from([7, 11, 12, 13])
        .flatmap(lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))
        .map(lambda body: body + gtin_check_digit(body))
    )


@st.composite
def envelopes(draw: st.DrawFn, event_type: str) -> dict[str, Any]:
    return {
        "event_id": str(draw(st.uuids())),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": draw(instants),
        "source_system": draw(text_ids),
        "correlation_id": draw(text_ids),
        "causation_id": draw(st.none() | text_ids),
        "entity_id": draw(text_ids),
        "facility_id": draw(st.none() | text_ids),
        "priority": draw(st.sampled_from(["CRITICAL", "HIGH", "ROUTINE"])),
        "actor": draw(st.text(min_size=1, max_size=30)),
    }


@st.composite
def stock_movements(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "envelope": draw(envelopes("StockMovement")),
        "movement_id": str(draw(st.uuids())),
        "kind": draw(
            st.sampled_from(
                ["RECEIPT", "ISSUE", "TRANSFER_IN", "TRANSFER_OUT", "RETURN", "WRITE_OFF"]
            )
        ),
        "item_id": draw(text_ids),
        "location_id": draw(text_ids),
        "lot_number": draw(st.none() | text_ids),
        "expiry_date": draw(st.none() | st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1))),
        "quantity": {
            "value": draw(quantities),
            "uom": draw(st.sampled_from(sorted(UNITS_OF_MEASURE))),
        },
        "counterpart_location_id": draw(st.none() | text_ids),
        "reference_id": draw(st.none() | text_ids),
        "reason": draw(st.none() | st.text(max_size=40)),
    }
