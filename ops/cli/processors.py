"""`supplybus processors list | builtin | rename` (ADR 0007)."""

from __future__ import annotations

from typing import Any

import click
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from rich.table import Table

from supplybus.adapters.kafka import make_admin, map_kafka_errors
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.processors import BUILTIN, load_processor
from supplybus.consumers.runtime import identity
from supplybus.consumers.runtime.start import format_start
from supplybus.errors import ConfigError, SupplybusError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.group()
def processors() -> None:
    """Registered processors: their stored identity, start and rename."""


def committed(settings: Settings, group: str) -> list[TopicPartition]:
    """The offsets ``group`` committed (none for a group that never committed)."""
    admin = make_admin(settings)
    request = [ConsumerGroupTopicPartitions(group)]
    with map_kafka_errors(settings, f"reading the offsets of consumer group {group}"):
        futures = admin.list_consumer_group_offsets(
            request, request_timeout=settings.connect_timeout_s
        )
        found = futures[group].result(timeout=settings.connect_timeout_s * 2)
    return sorted(
        (tp for tp in found.topic_partitions or [] if tp.offset >= 0),
        key=lambda tp: (tp.topic, tp.partition),
    )


def live_members(settings: Settings, group: str) -> int:
    """Members of ``group`` as the broker reports them (Tansu always reports none)."""
    admin = make_admin(settings)
    with map_kafka_errors(settings, f"describing consumer group {group}"):
        futures = admin.describe_consumer_groups(
            [group], request_timeout=settings.connect_timeout_s
        )
        return len(futures[group].result(timeout=settings.connect_timeout_s * 2).members)


def copy_offsets(settings: Settings, group: str, offsets: list[TopicPartition]) -> None:
    """Commit ``offsets`` for ``group`` (a group without members)."""
    if not offsets:
        return
    admin = make_admin(settings)
    request = [ConsumerGroupTopicPartitions(group, offsets)]
    with map_kafka_errors(settings, f"committing offsets for consumer group {group}"):
        futures = admin.alter_consumer_group_offsets(
            request, request_timeout=settings.connect_timeout_s
        )
        futures[group].result(timeout=settings.connect_timeout_s * 2)


def _positions(offsets: list[TopicPartition]) -> list[dict[str, Any]]:
    return [{"topic": tp.topic, "partition": tp.partition, "offset": tp.offset} for tp in offsets]


def _row(settings: Settings, found: identity.Identity, broker: bool) -> dict[str, Any]:
    lanes = identity.lane_groups(settings, found.name)
    return {
        "name": found.name,
        "consumes": list(found.consumes),
        "start": format_start(found.start),
        "registered_at": found.registered_at.isoformat(),
        "renamed_from": found.renamed_from,
        "renamed_at": found.renamed_at.isoformat() if found.renamed_at else None,
        "renaming_to": found.renaming_to,
        "committed": (
            {lane: _positions(committed(settings, group)) for lane, group in lanes.items()}
            if broker
            else None
        ),
    }


def _broker_answers(settings: Settings) -> bool:
    try:
        committed(settings, f"{settings.group_prefix}.supplybus-probe")
    except SupplybusError:
        return False
    return True


@processors.command("list")
@json_option
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List registered processors: event types, start, registration, rename history and the
    committed offsets of each lane (`committed` is null when the broker does not answer)."""
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        found = identity.identities(conn)
    broker = settings.kafka_bootstrap_servers is not None and _broker_answers(settings)
    rows = [_row(settings, f, broker) for f in found.values()]
    if as_json:
        emit_json(rows)
        return
    table = Table("processor", "consumes", "start", "registered", "renamed from", "committed")
    for r in rows:
        done = r["committed"]
        table.add_row(
            r["name"] + (f" (renaming to {r['renaming_to']})" if r["renaming_to"] else ""),
            ", ".join(r["consumes"]),
            r["start"],
            r["registered_at"][:19],
            f"{r['renamed_from']} ({r['renamed_at'][:19]})" if r["renamed_from"] else "",
            "?" if done is None else " / ".join(f"{lane} {_total(p)}" for lane, p in done.items()),
        )
    out.print(table)


@processors.command("builtin")
@json_option
def builtin_cmd(as_json: bool) -> None:
    """The built-in processors `supplybus run NAME` knows: what each does and consumes."""
    found = [load_processor(name) for name in BUILTIN]
    if as_json:
        emit_json([{"name": p.name, "consumes": list(p.consumes), "description": p.description,
                    "on_dead_letter": p.on_dead_letter} for p in found])  # fmt: skip
        return
    table = Table("processor", "consumes", "after a dead letter", "what it does")
    for p in found:
        table.add_row(p.name, ", ".join(p.consumes), p.on_dead_letter, p.description)
    out.print(table)


def _total(positions: list[dict[str, Any]]) -> int:
    return sum(int(p["offset"]) for p in positions)


@processors.command("rename")
@click.argument("old")
@click.argument("new")
@click.option("--yes", is_flag=True, help="Rename without asking.")
@pass_ctx
def rename_cmd(ctx: Context, old: str, new: str, yes: bool) -> None:
    """Rename processor OLD to NEW, carrying its offsets, ledger, dead letters and held events
    over, so that nothing is applied again. Rename here BEFORE deploying code with the new name.

    \b
    Refused (exit 2) when OLD is not registered; when NEW exists (registered, with ledger
    rows, dead letters or held events, or its groups have committed offsets); or when a runner
    of OLD is live. Liveness: every runner holds a PostgreSQL advisory lock per processor
    while it runs; on Apache Kafka the consumer groups' members count too. The embedded
    Tansu broker reports no group members, so there only the lock tells.

    \b
    Steps: mark OLD as being renamed (its runners, and runners of NEW, refuse to start
    until the rename is done); copy the committed offsets of <prefix>.OLD and
    <prefix>.OLD.critical to the groups of NEW; then, in ONE database transaction, move the
    ledger rows, dead letters, key holds, held events and the identity row. Interrupted
    between the two, the database still says OLD (marked) and the groups of NEW hold a copy:
    run the same command again to finish; it is idempotent, and says so when the rename is
    already done.
    """
    settings = ctx.running()
    conn = identity.open_for_rename(settings, old, new)
    try:
        state = identity.rename_state(conn, old, new)
        old_groups = identity.lane_groups(settings, old)
        new_groups = identity.lane_groups(settings, new)
        decision = identity.rename_decision(
            state,
            old,
            new,
            new_has_offsets=lambda: any(committed(settings, g) for g in new_groups.values()),
        )
        if decision == "done":
            out.print(f"{old} is already renamed to {new}")
            return
        for group in old_groups.values():
            if live_members(settings, group):
                raise ConfigError(
                    f"processors rename: consumer group {group} has live members: stop the "
                    f"runners of {old} first"
                )
        offsets = {lane: committed(settings, g) for lane, g in old_groups.items()}
        partitions = sum(map(len, offsets.values()))
        if not yes:
            click.confirm(
                f"rename {old} to {new}, carrying over {_rows(state.old_rows)} and the "
                f"committed offsets of {partitions} partitions?",
                abort=True,
            )
        identity.mark_rename(conn, old, new)
        for lane, positions in offsets.items():
            copy_offsets(settings, new_groups[lane], positions)
        moved = identity.finish_rename(conn, old, new)
    finally:
        conn.close()
    out.print(
        f"renamed {old} to {new}: {_rows(moved)} and the committed offsets of {partitions} "
        "partitions carried over"
    )


def _rows(per_table: dict[str, int]) -> str:
    """'199 ledger rows, 1 dead letters, 0 key holds, 0 held events'."""
    return ", ".join(f"{per_table[t]} {_WHAT[t]}" for t in identity.MOVED)


_WHAT = {
    "processed_events": "ledger rows",
    "dead_letters": "dead letters",
    "key_holds": "key holds",
    "held_events": "held events",
}
