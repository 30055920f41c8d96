"""`supplybus dlq`: the dead-letter workbench (list, show, park, unpark, skip, edit).

The group object ``dlq`` is where other modules add commands (``dlq replay``). A dead letter
is named by its id or a unique prefix of at least 8 hex characters (as listed).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.runtime import dlq_patch, dlq_store
from supplybus.consumers.runtime.dlq_store import DeadLetterRow, Details, DlqFilter, GroupCount
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx

F = TypeVar("F", bound=Callable[..., Any])
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HEX_SHOWN = 512


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` before ``now`` (default: the current time), or an ISO
    date or instant (UTC if no zone is given)."""
    now = now or dt.datetime.now(dt.UTC)
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative:
        amount, unit = relative.groups()
        try:
            return now - dt.timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:
            raise click.BadParameter(f"{text!r}: too far back", param_hint="--since") from None
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected an ISO date or instant (2026-11-30T08:00Z) or an age such "
            "as 30m, 1h, 2d",
            param_hint="--since",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def age(since: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _actor(f: F) -> F:
    return click.option(
        "--as",
        "actor",
        metavar="NAME",
        help="Who acts, for the dead letter's log (default: your OS user).",
    )(f)


def _who(actor: str | None) -> str:
    return actor or getpass.getuser()


@cli.group("dlq")
def dlq() -> None:
    """The dead-letter workbench: see what failed and why, correct it, park, skip or replay it.

    Dead letters are records a processor could not apply, kept with their original bytes,
    headers and lineage (`dead_letters`). Nothing here deletes one; every action is recorded
    in the dead letter's log (`dlq show`). IDs are dead-letter ids or unique prefixes of at
    least 8 hex characters.
    """


@dlq.command("list")
@click.option("--topic", help="Only dead letters read from this topic.")
@click.option("--processor", help="Only this processor's dead letters.")
@click.option("--error", "error_code", metavar="CODE", help="Only this error code (BUSINESS_RULE).")
@click.option(
    "--status",
    type=click.Choice([*dlq_store.STATUSES, "all"]),
    default="open",
    show_default=True,
    help="Only dead letters in this status.",
)
@click.option("--since", help="Failed last since: an age (30m, 1h, 2d) or an ISO date/instant.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Rows per page."
)
@click.option("--after", metavar="ID", help="The page after this dead letter (see the hint).")
@json_option
@pass_ctx
def list_cmd(
    ctx: Context,
    topic: str | None,
    processor: str | None,
    error_code: str | None,
    status: str,
    since: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """Counts by processor, topic, error code and status, then one page of dead letters
    (oldest first) and the option that shows the next page.

    \b
    Examples:
      supplybus dlq list --processor requisitions --error BUSINESS_RULE
      supplybus dlq list --status all --since 2h --json
    """
    now = dt.datetime.now(dt.UTC)
    filters = DlqFilter(
        topic=topic,
        processor=processor,
        error_code=error_code,
        status=None if status == "all" else status,
        since=parse_since(since, now) if since else None,
    )
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        after_id = _cursor(conn, after) if after else None
        groups = dlq_store.summary(conn, filters)
        page = dlq_store.rows(conn, filters, limit, after_id)
    following = page[-1].dead_letter_id if len(page) == limit else None
    if as_json:
        emit_json(
            {
                "groups": [g.__dict__ for g in groups],
                "rows": [r.__dict__ for r in page],
                "next_after": following,
            }
        )
        return
    _print_list(groups, page, following, now)


def _cursor(conn: Any, after: str) -> int:
    full = dlq_store.resolve_id(conn, after)
    row = conn.execute("SELECT id FROM dead_letters WHERE dead_letter_id = %s", (full,)).fetchone()
    return int(row[0])


def _print_list(
    groups: list[GroupCount], page: list[DeadLetterRow], following: str | None, now: dt.datetime
) -> None:
    if not groups:
        out.print("no dead letters")
        return
    counts = Table("processor", "topic", "error", "status", "count", "oldest")
    for g in groups:
        counts.add_row(
            g.processor, g.topic, g.error_code, g.status, str(g.count), age(g.oldest, now)
        )
    out.print(counts)
    rows = Table(
        "id", "processor", "topic", "at", "event", "error", "message", "tries", "age", "status"
    )
    for r in page:
        rows.add_row(
            r.dead_letter_id[:8],
            r.processor,
            r.topic,
            f"{r.partition}@{r.offset}",
            r.event_type or "-",
            r.error_code,
            escape(r.message[:60] + ("…" if len(r.message) > 60 else "")),
            str(r.attempts),
            age(r.first_failed_at, now),
            r.status + (" (edited)" if r.edited else ""),
        )
    out.print(rows)
    if following:
        out.print(f"next page: --after {following}")


@dlq.command("show")
@click.argument("dead_letter_id", metavar="ID")
@json_option
@pass_ctx
def show_cmd(ctx: Context, dead_letter_id: str, as_json: bool) -> None:
    """One dead letter: its payload (decoded, or hex and the decode error), the edited
    version if any, original headers, lineage, the error and its stack digest, attempts,
    its log (failures, replays, parks, skips, edits) and the keys held behind it."""
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        found = dlq_store.details(conn, dead_letter_id)
    shown = _shown(found, catalog)
    if as_json:
        emit_json(shown)
        return
    _print_details(shown)


def _jsonable(value: Any) -> Any:
    return json.loads(jsonio.dumps(value))


def _payload(catalog: EventCatalog, value: bytes | None) -> dict[str, Any]:
    record, why = dlq_store.decode(catalog, value)
    if record is not None:
        return {"decoded": _jsonable(record)}
    raw = b"" if value is None else bytes(value)
    return {"decode_error": why, "size": len(raw), "hex": raw[:HEX_SHOWN].hex()}


def _header(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "hex:" + value.hex()


def _shown(found: Details, catalog: EventCatalog) -> dict[str, Any]:
    row = found.row
    key = None if row["key"] is None else bytes(row["key"])
    return {
        "dead_letter_id": row["dead_letter_id"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "processor": row["processor"],
        "lineage": {
            "topic": row["topic"],
            "partition": row["partition"],
            "offset": row["offset"],
            "timestamp": row["record_timestamp"],
            "key": _header(key),
            "dlq_topic": row["dlq_topic"],
        },
        "event": {
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "correlation_id": row["correlation_id"],
        },
        "error": {
            "class": row["error_class"],
            "code": row["error_code"],
            "message": row["message"],
            "stack_digest": row["stack_digest"],
        },
        "attempts": row["attempts"],
        "first_failed_at": row["first_failed_at"],
        "last_failed_at": row["last_failed_at"],
        "payload": _payload(catalog, row["value"]),
        "edited": None
        if row["edited_value"] is None
        else {"at": row["edited_at"], **_payload(catalog, bytes(row["edited_value"]))},
        "headers": [[k, _header(v)] for k, v in found.headers],
        "log": [
            {
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "outcome": e.outcome,
                "detail": e.detail,
            }
            for e in found.log
        ],
        "held_keys": [
            {"key": _header(h.key), "held_since": h.held_since, "held_events": h.events}
            for h in found.held
        ],
    }


def _print_details(s: dict[str, Any]) -> None:
    line, e, err = s["lineage"], s["event"], s["error"]
    reason = f" ({escape(s['status_reason'])})" if s["status_reason"] else ""
    out.print(f"dead letter {s['dead_letter_id']}  [bold]{s['status']}[/bold]{reason}")
    facts = [
        ("processor", s["processor"]),
        ("read from", f"{line['topic']} partition {line['partition']} offset {line['offset']}"),
        ("written at", str(line["timestamp"])),
        ("key", str(line["key"])),
        ("event", f"{e['event_type'] or '-'} {e['event_id'] or ''}".strip()),
        ("correlation", str(e["correlation_id"] or "-")),
        ("error", f"{err['class']} {err['code']}: {err['message']}"),
        ("stack digest", err["stack_digest"]),
        ("attempts", f"{s['attempts']} (first {s['first_failed_at']}, last {s['last_failed_at']})"),
    ]
    for name, value in facts:
        out.print(f"  {name:<13} {escape(value)}")
    _print_payload("payload", s["payload"])
    if s["edited"]:
        _print_payload(f"edited payload (at {s['edited']['at']}; a replay uses it)", s["edited"])
    out.print("headers" if s["headers"] else "headers: none")
    for k, v in s["headers"]:
        out.print(f"  {escape(k)}: {escape(str(v))}")
    if s["log"]:
        log = Table("at", "actor", "action", "outcome", "detail", title="log")
        for entry in s["log"]:
            log.add_row(
                entry["at"].isoformat(timespec="seconds"),
                escape(entry["actor"]),
                entry["action"],
                entry["outcome"],
                escape(jsonio.dumps(entry["detail"])[:120]),
            )
        out.print(log)
    else:
        out.print("log: nothing yet")
    if s["held_keys"]:
        held = Table("key", "held since", "events waiting", title="keys held behind it")
        for h in s["held_keys"]:
            held.add_row(
                escape(str(h["key"])),
                h["held_since"].isoformat(timespec="seconds"),
                str(h["held_events"]),
            )
        out.print(held)
    else:
        out.print("keys held behind it: none")


def _print_payload(title: str, payload: dict[str, Any]) -> None:
    if "decoded" in payload:
        out.print(f"{title}:")
        out.print(escape(json.dumps(payload["decoded"], indent=2, ensure_ascii=False)))
        return
    cut = " (first 512 bytes)" if payload["size"] > HEX_SHOWN else ""
    out.print(f"{title}: does not decode: {escape(str(payload['decode_error']))}")
    out.print(f"  {payload['size']} bytes{cut}: {payload['hex']}")


@dlq.command("park")
@click.argument("ids", metavar="ID...", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it waits (kept in its log).")
@_actor
@pass_ctx
def park_cmd(ctx: Context, ids: tuple[str, ...], reason: str, actor: str | None) -> None:
    """Set open dead letters aside ("not now"): they leave `--status open` and replays by
    filter, and their keys stay held. `dlq unpark` reopens them."""
    with connect(ctx.running(kafka=False)) as conn:
        done = dlq_store.park(conn, ids, reason, _who(actor))
    for i in done:
        click.echo(f"parked {i}")


@dlq.command("unpark")
@click.argument("ids", metavar="ID...", nargs=-1, required=True)
@_actor
@pass_ctx
def unpark_cmd(ctx: Context, ids: tuple[str, ...], actor: str | None) -> None:
    """Reopen parked dead letters."""
    with connect(ctx.running(kafka=False)) as conn:
        done = dlq_store.unpark(conn, ids, _who(actor))
    for i in done:
        click.echo(f"reopened {i}")


@dlq.command("skip")
@click.argument("dead_letter_id", metavar="ID")
@click.option("--reason", required=True, help="Why it is never to be applied (kept in its log).")
@_actor
@pass_ctx
def skip_cmd(ctx: Context, dead_letter_id: str, reason: str, actor: str | None) -> None:
    """Resolve an open or parked dead letter without applying it (e.g. a test record). The
    holds on its key are lifted: the processor, when it runs, applies the events held behind
    it, in order. Nothing is deleted."""
    with connect(ctx.running(kafka=False)) as conn:
        full = dlq_store.resolve_id(conn, dead_letter_id)
        lifted = dlq_store.skip(conn, full, reason, _who(actor))
    click.echo(f"skipped {full} (resolved; {lifted} hold(s) lifted)")


@dlq.command("edit")
@click.argument("dead_letter_id", metavar="ID")
@click.option(
    "--set",
    "sets",
    metavar="FIELD=VALUE",
    multiple=True,
    required=True,
    help="A correction, e.g. lines.0.item_id=ITEM-0002 or envelope.facility_id=null.",
)
@_actor
@pass_ctx
def edit_cmd(ctx: Context, dead_letter_id: str, sets: tuple[str, ...], actor: str | None) -> None:
    """Store a corrected record beside the original bytes (kept); a replay uses it.

    \b
    FIELD is a dotted path into the record (lines.0.quantity.value, envelope.facility_id);
    VALUE is parsed to the field's type: text, integers, true/false, null (an optional field),
    decimals as text (12.50), ISO dates and instants; a record or list as JSON; "..." is
    always text. The result is validated (schema and domain checks) before it is stored;
    the envelope's event_id (the idempotency key) cannot change. Editing again starts from
    the edited version.
    """
    pairs = [dlq_patch.parse_assignment(s) for s in sets]
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        done = dlq_store.edit(conn, catalog, dead_letter_id, pairs, _who(actor))
    click.echo(f"edited {done.dead_letter_id} (the original bytes are kept):")
    for path, (old, new) in done.changes.items():
        click.echo(f"  {path}: {jsonio.dumps(old)} -> {jsonio.dumps(new)}")
