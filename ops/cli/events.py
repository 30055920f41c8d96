"""`supplybus publish` and `supplybus consume`."""

from __future__ import annotations

import getpass
import hashlib
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from supplybus.adapters.kafka import read_records
from supplybus.errors import ConfigError, FieldError, ValidationError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.envelope import PRIORITIES, deterministic_id, utcnow
from supplybus.ops.cli.root import Context, cli, out, pass_ctx
from supplybus.producers.publisher import Publisher, prepare_all


def _read(path: Path) -> tuple[str, list[tuple[int, Any]]]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    import io

    return hashlib.sha256(text.encode()).hexdigest(), list(jsonio.read_lines(io.StringIO(text)))


@cli.command()
@click.argument("event_type")
@click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    required=True,
    help="JSON lines, one event payload per line ('-' for stdin).",
)
@click.option(
    "--source-system",
    default="cli",
    show_default=True,
    help="envelope.source_system when a line has none.",
)
@click.option("--entity-id", help="envelope.entity_id when a line has none.")
@click.option("--facility-id", help="envelope.facility_id when a line has none.")
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES),
    default="ROUTINE",
    show_default=True,
    help="envelope.priority when a line has none (CRITICAL uses the critical lane).",
)
@pass_ctx
def publish(
    ctx: Context,
    event_type: str,
    path: Path,
    source_system: str,
    entity_id: str | None,
    facility_id: str | None,
    priority: str,
) -> None:
    """Validate every line of a file, then publish them all, or nothing.

    Each line is an EVENT_TYPE payload; envelope fields a line leaves out are filled in
    (event_id is derived from the file's content and the line number, so publishing the same
    file twice yields the same ids and downstream processors skip the repeats). If any line
    is invalid, every invalid line is listed with its number and field path, nothing is
    published, and the exit code is 2.
    """
    settings = ctx.settings
    catalog = EventCatalog.from_settings(settings)
    sv = catalog.store.latest(event_type)
    digest, lines = _read(path)
    defaults: dict[str, Any] = {
        "event_type": sv.event_type,
        "schema_version": sv.version,
        "source_system": source_system,
        "priority": priority,
        "actor": getpass.getuser(),
        "facility_id": facility_id,
        "causation_id": None,
    }
    if entity_id:
        defaults["entity_id"] = entity_id
    objects: dict[int, dict[str, Any]] = {}
    errors: dict[int, list[FieldError]] = {}
    for number, parsed in lines:
        if isinstance(parsed, FieldError):
            errors[number] = [FieldError(f"line {number}", parsed.expected)]
        elif not isinstance(parsed, dict):
            kind = type(parsed).__name__
            errors[number] = [FieldError(f"line {number}", f"expected a JSON object, got {kind}")]
        else:
            eid = deterministic_id(digest, number)
            line_defaults = defaults | {
                "event_id": eid,
                "correlation_id": eid,
                "occurred_at": utcnow(),
            }
            objects[number] = jsonio.with_envelope_defaults(parsed, line_defaults)
    numbers = {f"line {n}": n for n in objects}
    prepared: list[Outgoing] = []
    try:
        prepared = prepare_all(catalog, list(objects.values()), labels=list(numbers))
    except ValidationError as exc:
        for error in exc.errors:
            errors.setdefault(numbers[error.path.split(": ")[0]], []).append(error)
    label = jsonio.file_label(path)
    if errors:
        for number in sorted(errors):
            for error in errors[number]:
                click.echo(f"{label}: {error}", err=True)
        count = sum(len(e) for e in errors.values())
        raise ValidationError(
            [FieldError("", f"{count} error(s) in {label}; nothing was published")]
        )
    if not prepared:
        raise ConfigError(f"{label}: no events in the file")
    running = ctx.running(database=False)  # the broker is needed only once the file is valid
    with Publisher.from_settings(running) as publisher:
        publisher.send_all(prepared)
        delivered = publisher.flush()
    topics = sorted({p.topic for p in prepared})
    out.print(f"published {delivered} {sv.event_type} event(s) to {', '.join(topics)}")


@cli.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@click.option("--follow", is_flag=True, help="Keep waiting for new records (Ctrl-C to stop).")
@click.option(
    "--idle-seconds",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Without --follow: stop after this long without a new record.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@pass_ctx
def consume(
    ctx: Context,
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    follow: bool,
    idle_seconds: float,
    as_json: bool,
) -> None:
    """Print the records of TOPIC, decoded. Undecodable records print as an error line.

    Reads every partition without joining a consumer group or committing anything.
    """
    settings = ctx.running(database=False)
    catalog = EventCatalog.from_settings(settings)
    spec = catalog.topics.topic(topic)
    records = read_records(
        settings,
        {spec.name: spec.partitions},
        from_beginning=from_beginning,
        limit=max_records,
        quiet_s=None if follow else idle_seconds,
        on_error=lambda error: click.echo(jsonio.dumps({"error": error.str()}), err=True),
    )
    with closing(records):
        for msg in records:
            click.echo(_render(catalog, msg, as_json))


def _render(catalog: EventCatalog, msg: Any, as_json: bool) -> str:
    where = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": (msg.key() or b"").decode(errors="replace"),
    }
    try:
        decoded = catalog.codec.decode(msg.value())
    except Exception as exc:  # noqa: BLE001 - any undecodable record is shown, never fatal
        row = where | {"error": str(exc), "value_hex": (msg.value() or b"")[:64].hex()}
        return (
            jsonio.dumps(row)
            if as_json
            else f"{where['topic']}[{where['partition']}]@{where['offset']} UNDECODABLE {exc}"
        )
    if as_json:
        return jsonio.dumps(
            where
            | {
                "event_type": decoded.event_type,
                "schema_version": decoded.version,
                "event": decoded.record,
            }
        )
    env = decoded.envelope
    return (
        f"{where['topic']}[{where['partition']}]@{where['offset']} {decoded.event_type} "
        f"key={where['key']} corr={env['correlation_id']} {jsonio.dumps(decoded.record)}"
    )
