"""`supplybus topics apply | list`."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from supplybus.events.topics import load_catalog
from supplybus.ops import topic_admin
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.ops.topic_admin import TopicState


@cli.group()
def topics() -> None:
    """The topic catalog (SUPPLYBUS_TOPIC_CATALOG) against the broker."""


def _row(state: TopicState) -> dict[str, Any]:
    spec = state.spec
    return {
        "name": spec.name,
        "status": state.status,
        "role": spec.role,
        "lane": spec.lane,
        "partitions": spec.partitions,
        "broker_partitions": state.partitions,
        "configs": dict(spec.configs),
        "key": spec.key,
        "events": list(spec.event_types),
        "dlq": spec.dlq,
        "drift": list(state.drift),
    }


def _print(states: list[TopicState], as_json: bool) -> None:
    if as_json:
        emit_json([_row(s) for s in states])
        return
    table = Table("topic", "status", "lane", "partitions", "key", "events / drift")
    colour = {"ok": "green", "created": "cyan", "drift": "yellow", "missing": "red"}
    for s in states:
        detail = "; ".join(s.drift) if s.drift else ", ".join(s.spec.event_types)
        table.add_row(
            s.spec.name,
            f"[{colour[s.status]}]{s.status}[/]",
            s.spec.lane,
            str(s.partitions if s.partitions is not None else s.spec.partitions),
            s.spec.key,
            detail,
        )
    out.print(table)


@topics.command("apply")
@json_option
@pass_ctx
def apply_cmd(ctx: Context, as_json: bool) -> None:
    """Create every catalog topic that is missing; report drift, change nothing else.

    Drift (a partition count or config that differs from the catalog) is never fixed
    automatically: shrinking partitions is impossible and growing them re-keys streams.
    Exits 1 when drift was found.
    """
    settings = ctx.running(database=False)
    states = topic_admin.apply(settings, load_catalog(settings.topic_catalog))
    _print(states, as_json)
    if any(s.status == "drift" for s in states):
        sys.exit(1)


@topics.command("list")
@json_option
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List the catalog's topics and how each compares with the broker (changes nothing)."""
    settings = ctx.running(database=False)
    _print(topic_admin.inspect(settings, load_catalog(settings.topic_catalog)), as_json)


@topics.command("catalog")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def catalog_cmd(ctx: Context, as_json: bool) -> None:
    """Show the catalog file as supplybus reads it (no broker needed)."""
    catalog = load_catalog(ctx.settings.topic_catalog)
    _print([TopicState(t, "ok", None) for t in catalog.topics], as_json)
