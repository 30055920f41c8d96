"""`supplybus trace CORRELATION_ID`: where is my order, and why is it stuck?"""

from __future__ import annotations

import click
import psycopg
from rich.markup import escape
from rich.tree import Tree

from supplybus.adapters.postgres import connect
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.ops.trace_model import DeadLetter, Node, Trace, delta, explain, short, to_json
from supplybus.ops.tracing import trace


@cli.command("trace")
@click.argument("correlation_id")
@json_option
@pass_ctx
def trace_cmd(ctx: Context, correlation_id: str, as_json: bool) -> None:
    """The causal chain of one business transaction, read from the database.

    CORRELATION_ID is the transaction's correlation id (for a requisition: its requisition
    id). Every event of it is drawn under the event that caused it, with the time since the
    first (+Δ), who emitted it, and the processors that applied it; markers show dead letters
    (✗, with their replays and parks), held events (⏸) and events not yet published by the
    relay. The "stuck?" section then says in a line or two what the transaction waits on: an
    open dead letter and what is held behind it, an event no processor has applied yet, an
    approval step, a delivery. `--json` gives the same structure. An unknown correlation id
    prints one line and exits 2.
    """
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        try:
            found = trace(conn, correlation_id)
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"schema {settings.db_schema}: {exc.diag.message_primary}"
                " (run `supplybus db migrate`)"
            ) from exc
    if as_json:
        emit_json(to_json(found))
        return
    for line in found.status:
        out.print(f"[bold]{escape(line)}[/bold]")
    out.print(_tree(found))
    stuck = explain(found)
    out.print("[bold]stuck?[/bold] " + ("yes" if found.stuck else "no"))
    for line in stuck:
        style = "red" if found.stuck else "green"
        out.print(f"  [{style}]{escape(line)}[/{style}]")


def _tree(t: Trace) -> Tree:
    start = t.started_at.isoformat(timespec="milliseconds") if t.started_at else "?"
    root = Tree(f"trace [bold]{escape(t.correlation_id)}[/bold]  started {start}")
    branches: dict[str, Tree] = {}
    for n in t.nodes.values():
        parent = branches.get(n.causation_id or "", root) if n.depth else root
        branches[n.event_id] = branch = parent.add(_label(n, t))
        _details(branch, n, t)
    for d in t.undecoded:  # no event id: nothing to hang it under
        _add_dead(root, d, t)
    return root


def _label(n: Node, t: Trace) -> str:
    kind = escape(n.event_type or "? event")
    by = f"by {escape(n.emitted_by)}" if n.emitted_by else "published"
    topic = f" → {escape(n.topic)}" if n.topic else ""
    marks = ""
    if n.parked:
        marks += f"  [red]parked: {escape(n.parked)}[/red]"
    elif n.unsent:
        marks += "  [yellow]unsent[/yellow]"
    if any(d.is_open for d in n.dead_letters):
        marks += "  [red]✗ dead letter[/red]"
    if n.held:
        marks += "  [yellow]⏸ held[/yellow]"
    return (
        f"[bold]{kind}[/bold] [dim]{short(n.event_id)}[/dim] "
        f"{delta(n.at, t.started_at)} {by}{topic}{marks}"
    )


def _dead_line(d: DeadLetter, t: Trace) -> str:
    colour = "red" if d.is_open else "dim"
    return (
        f"[{colour}]✗ dead letter {short(d.dead_letter_id)} at {escape(d.processor)}"
        f" {delta(d.first_failed_at, t.started_at)}: {escape(d.error_code)}"
        f" {escape(d.message)} ({d.status}, {d.attempts} attempt(s),"
        f" {d.held_behind} held behind)[/{colour}]"
    )


def _add_dead(branch: Tree, d: DeadLetter, t: Trace) -> None:
    dead = branch.add(_dead_line(d, t))
    for g in d.log:
        dead.add(
            f"↻ {escape(g.action)} by {escape(g.actor)} {delta(g.at, t.started_at)}:"
            f" {escape(g.outcome)}"
        )


def _details(branch: Tree, n: Node, t: Trace) -> None:
    if n.applied:
        applied = ", ".join(f"{escape(a.processor)} {delta(a.at, t.started_at)}" for a in n.applied)
        branch.add(f"[green]applied by[/green] {applied}")
    for d in n.dead_letters:
        _add_dead(branch, d, t)
    for h in n.held:
        waits = ", ".join(short(w) for w in h.waits_on) or "nothing (releasing)"
        branch.add(
            f"[yellow]⏸ held at {escape(h.processor)} {delta(h.held_at, t.started_at)}"
            f" (key {escape(h.key)}) behind {waits}[/yellow]"
        )
    for a in n.audit:
        why = f": {escape(a.reason)}" if a.reason else ""
        branch.add(
            f"[dim]audit {escape(a.entity_type)} {escape(a.entity_id)} {escape(a.action)}"
            f" by {escape(a.actor)} {delta(a.recorded_at, t.started_at)}{why}[/dim]"
        )
