"""The webhook's pure rules: signatures (window, rotation, tampering) and body parsing, with
hypothesis fuzzing of the body: a field error (422), never a crash (500)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplybus.config import Settings
from supplybus.errors import ValidationError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.producers.webhook import signature as sig
from supplybus.producers.webhook.intake import delivery_id_ok, event_id_for, load_json, parse
from tests.requisition_data import VALID, line, submitted

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
NOW = 1_800_000_000
BODY = b'{"requisition_id": "REQ-1"}'
CATALOG = EventCatalog.from_settings(Settings())


def _verify(
    secrets: list[str], stamp: str | None, signature: str | None, body: bytes = BODY
) -> str:
    return sig.verify(secrets, stamp, signature, body, now=NOW, tolerance_s=300)


def test_signing_string_is_timestamp_dot_body() -> None:
    assert sig.signing_string("1800000000", b'{"a":1}') == b'1800000000.{"a":1}'
    # the documented example (docs/webhook.md)
    assert sig.sign("whsec-example-0123456789", 1800000000, b'{"a":1}') == (
        "v1=" + sig.digest("whsec-example-0123456789", "1800000000", b'{"a":1}')
    )


def test_a_valid_signature_passes_within_the_window_either_side() -> None:
    for offset in (-300, -1, 0, 1, 300):
        stamp = str(NOW + offset)
        assert _verify([NEW], stamp, sig.sign(NEW, stamp, BODY)) == "ok"


@pytest.mark.parametrize("offset", [-301, 301, -86_400, NOW])
def test_a_stale_or_future_timestamp_is_a_timestamp_failure(offset: int) -> None:
    stamp = str(NOW - offset)
    assert _verify([NEW], stamp, sig.sign(NEW, stamp, BODY)) == "timestamp"


def test_rotation_both_secrets_verify_and_a_retired_one_does_not() -> None:
    stamp = str(NOW)
    assert _verify([OLD, NEW], stamp, sig.sign(OLD, stamp, BODY)) == "ok"
    assert _verify([OLD, NEW], stamp, sig.sign(NEW, stamp, BODY)) == "ok"
    assert _verify([NEW], stamp, sig.sign(OLD, stamp, BODY)) == "signature"
    # a sender in the middle of a rotation sends one signature per secret
    both = f"{sig.sign('not-ours-0123456789abcd', stamp, BODY)}, {sig.sign(NEW, stamp, BODY)}"
    assert _verify([NEW], stamp, both) == "ok"


@pytest.mark.parametrize(
    "signature",
    [None, "", "v1=", "v0=" + "a" * 64, "v1=" + "g" * 64, "v1=" + "é" * 64, "garbage", "v1"],
)
def test_missing_or_malformed_signatures_fail_as_signature(signature: str | None) -> None:
    assert _verify([NEW], str(NOW), signature) == "signature"


@pytest.mark.parametrize(
    "stamp", [None, "", "abc", "1.5", "-1", "\uff11\uff12", "1" * 13, " 1800000000"]
)
def test_missing_or_malformed_timestamps_fail_as_timestamp(stamp: str | None) -> None:
    assert _verify([NEW], stamp, sig.sign(NEW, str(NOW), BODY)) == "timestamp"


def test_a_bad_signature_with_a_stale_timestamp_says_signature() -> None:
    stamp = str(NOW - 3600)
    assert _verify([NEW], stamp, sig.sign(OLD, stamp, BODY)) == "signature"


@given(body=st.binary(max_size=200), flip=st.integers(min_value=0))
def test_any_change_to_the_signed_body_or_timestamp_fails(body: bytes, flip: int) -> None:
    stamp = str(NOW)
    good = sig.sign(NEW, stamp, body)
    assert sig.verify([NEW], stamp, good, body, now=NOW, tolerance_s=300) == "ok"
    tampered = body + b" " if not body else bytes([body[0] ^ (1 + flip % 255)]) + body[1:]
    assert sig.verify([NEW], stamp, good, tampered, now=NOW, tolerance_s=300) == "signature"
    assert sig.verify([NEW], str(NOW + 1), good, body, now=NOW, tolerance_s=300) == "signature"


@given(stamp=st.text(max_size=20), signature=st.text(max_size=300), body=st.binary(max_size=64))
def test_verify_answers_a_verdict_for_any_header_text(
    stamp: str, signature: str, body: bytes
) -> None:
    assert sig.verify([OLD, NEW], stamp, signature, body, now=NOW, tolerance_s=300) in (
        "signature",
        "timestamp",
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[("d-1", True), ("x" * 200, True), ("x" * 201, False), ("", False), (None, False)],
        *[("a b", False), ("a\x00", False), ("é", False), ("a\tb", False)],
    ],
)
def test_delivery_ids_are_visible_ascii(value: str | None, ok: bool) -> None:
    assert delivery_id_ok(value) is ok


# --- the body -------------------------------------------------------------------------


def _requisition() -> dict[str, Any]:
    record = submitted("REQ-7", [line(1, *VALID[0]), line(2, *VALID[1])])
    del record["envelope"]["event_id"]
    parsed: dict[str, Any] = json.loads(jsonio.dumps(record))
    return parsed


def _body(record: Any) -> bytes:
    return json.dumps(record).encode()


def test_a_body_without_event_id_gets_one_derived_from_the_delivery() -> None:
    out = parse(CATALOG, "RequisitionSubmitted", "D-1", _body(_requisition()))
    again = parse(CATALOG, "RequisitionSubmitted", "D-1", _body(_requisition()))
    other = parse(CATALOG, "RequisitionSubmitted", "D-2", _body(_requisition()))
    assert out.envelope["event_id"] == again.envelope["event_id"] == event_id_for("D-1")
    assert other.envelope["event_id"] != out.envelope["event_id"]
    assert out.envelope["correlation_id"] == "REQ-7"  # given fields win
    assert out.topic == "procurement.requisitions.v1" and out.key == b"REQ-7"


def test_defaults_fill_the_envelope_and_a_given_event_id_wins() -> None:
    record = _requisition()
    record["envelope"] = {
        "entity_id": "ENT-EAST",
        "event_id": "6b1c5f7e-0a53-4a8e-9d3b-111111111111",
    }
    out = parse(CATALOG, "RequisitionSubmitted", "D-1", _body(record))
    env = out.envelope
    assert env["event_id"] == env["correlation_id"] == "6b1c5f7e-0a53-4a8e-9d3b-111111111111"
    assert (env["source_system"], env["actor"], env["priority"]) == (
        "webhook",
        "webhook",
        "ROUTINE",
    )


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["lines"][0]["quantity"].update(value="-3"), "lines[0].quantity.value"),
        (lambda r: r["lines"][1]["unit_price"].update(currency="XXQ"), "lines[1].unit_price"),
        (lambda r: r.pop("requisition_id"), "requisition_id"),
        (lambda r: r["envelope"].pop("entity_id"), "envelope.entity_id"),
        (lambda r: r["envelope"].update(event_type="StockMovement"), "envelope.event_type"),
        (lambda r: r.update(envelope=[1]), "envelope"),
        (lambda r: r["envelope"].update(event_id="not-a-uuid"), "envelope.event_id"),
    ],
)
def test_an_invalid_body_names_the_field(mutate: Any, field: str) -> None:
    record = _requisition()
    mutate(record)
    with pytest.raises(ValidationError) as caught:
        parse(CATALOG, "RequisitionSubmitted", "D-1", _body(record))
    assert any(e.path.startswith(field) for e in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "a JSON object (Expecting value"),
        (b"[1]", "a JSON object, got list"),
        (b"\xff\xfe{", "a JSON object"),
        (b'{"x": NaN}', "NaN is not a JSON number"),
        (b"[" * 50_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_one_field_error(body: bytes, expected: str) -> None:
    with pytest.raises(ValidationError, match=expected.replace("(", r"\(")):
        parse(CATALOG, "RequisitionSubmitted", "D-1", body)


def test_a_value_the_validator_cannot_read_is_still_a_field_error() -> None:
    """A list where a unit belongs made the domain checks raise TypeError (found by the fuzzing
    below): the sender gets a field error, the receiver an ERROR log line."""
    record = _requisition()
    record["lines"][0]["quantity"]["uom"] = []
    with pytest.raises(ValidationError) as caught:
        parse(CATALOG, "RequisitionSubmitted", "D-1", _body(record))
    assert caught.value.errors


def test_decimals_are_read_exactly() -> None:
    assert load_json(b'{"a": 0.1}') == {"a": __import__("decimal").Decimal("0.1")}


# --- fuzzing: any body is parsed or refused with field errors, never anything else -----------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_paths(v, (*prefix, i)))
    return found


def _set(record: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = record
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return record


def _parsed_or_field_errors(body: bytes, event_type: str = "RequisitionSubmitted") -> None:
    try:
        out = parse(CATALOG, event_type, "D-fuzz", body)
    except ValidationError as exc:
        assert exc.errors and all(isinstance(e.path, str) for e in exc.errors)
        return
    assert out.value and out.envelope["event_type"] == event_type


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(body=st.binary(max_size=300))
def test_fuzz_any_bytes(body: bytes) -> None:
    _parsed_or_field_errors(body)


@FUZZ
@given(value=json_values)
def test_fuzz_any_json(value: Any) -> None:
    _parsed_or_field_errors(json.dumps(value).encode())


@FUZZ
@given(data=st.data(), event_type=st.sampled_from(["RequisitionSubmitted", "StockMovement"]))
def test_fuzz_a_valid_requisition_with_one_value_replaced(
    data: st.DataObject, event_type: str
) -> None:
    record = copy.deepcopy(_requisition())
    path = data.draw(st.sampled_from(_paths(record)))
    mutated = _set(record, path, data.draw(json_values))
    _parsed_or_field_errors(json.dumps(mutated).encode(), event_type)


@FUZZ
@given(data=st.data())
def test_fuzz_a_valid_requisition_with_one_key_removed_or_added(data: st.DataObject) -> None:
    record = copy.deepcopy(_requisition())
    dicts = [p for p in _paths(record) if isinstance(_get(record, p), dict)]
    path = data.draw(st.sampled_from(dicts))
    target = _get(record, path)
    if target and data.draw(st.booleans()):
        target.pop(data.draw(st.sampled_from(sorted(target))))
    else:
        target[data.draw(st.text(max_size=12))] = data.draw(json_values)
    _parsed_or_field_errors(json.dumps(record).encode())


def _get(record: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        record = record[step]
    return record
