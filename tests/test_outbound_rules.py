"""The pure rules of outbound PO delivery: backoff, alert, the canonical document bytes."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.procurement.dispatch import Backoff, backoff_delay, render, should_alert

attempts = st.integers(min_value=0, max_value=10_000)
rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
backoffs = st.builds(
    Backoff,
    base_s=st.floats(min_value=0.001, max_value=60),
    cap_s=st.floats(min_value=0.01, max_value=3600),
    jitter=st.floats(min_value=0.0, max_value=0.9),
)


@given(attempts, rands, backoffs)
def test_backoff_is_monotone_up_to_the_cap(n: int, rand: float, backoff: Backoff) -> None:
    assert backoff_delay(n, rand, backoff) <= backoff_delay(n + 1, rand, backoff)


@given(attempts, rands, backoffs)
def test_backoff_is_positive_and_capped(n: int, rand: float, backoff: Backoff) -> None:
    delay = backoff_delay(n, rand, backoff)
    assert 0 < delay <= backoff.cap_s


@given(rands, backoffs)
def test_backoff_reaches_the_cap_less_jitter(rand: float, backoff: Backoff) -> None:
    assert backoff_delay(10_000, rand, backoff) >= backoff.cap_s * (1 - backoff.jitter)


def test_backoff_doubles_from_the_base_without_jitter() -> None:
    plain = Backoff(base_s=1.0, cap_s=10.0, jitter=0.0)
    assert [backoff_delay(n, 0.5, plain) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_delay(1, 0.999, Backoff(base_s=1.0, jitter=0.25)) > 0.75


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0.001, max_value=1e5))
def test_an_alert_fires_once_past_the_alert_time(waited: float, after: float) -> None:
    assert should_alert(waited, after, alerted=False) is (waited > after)
    assert should_alert(waited, after, alerted=True) is False


def test_the_document_bytes_are_canonical() -> None:
    doc = {"po_number": "PO-E-000001", "layout": "supplybus.po.v1", "lines": [{"b": 1, "a": "é"}]}
    body = render(doc)
    assert body == render(json.loads(body))  # stable through a round trip (e.g. jsonb)
    assert body.endswith(b"}\n") and "é".encode() in body
    text = body.decode()
    assert text.index('"layout"') < text.index('"lines"') < text.index('"po_number"')
    assert '\n  "layout": "supplybus.po.v1",\n' in text
