"""`supplybus approvals list|escalate`, `supplybus approve`, `supplybus deny`: human approvals.

Decisions and escalations are events written to the outbox (the relay publishes them, the
``approvals`` processor applies them): see consumers/approvals/commands.py.
"""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.approvals import commands
from supplybus.consumers.approvals.published import PoliciesInForce
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import utcnow
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.group("approvals")
def approvals_group() -> None:
    """Approval steps waiting for a decision, and the SLA sweep.

    Decide with `supplybus approve REQ --as ID` and `supplybus deny REQ --as ID --reason ...`.
    """


@approvals_group.command("list")
@click.option("--approver", "approver_id", help="Only steps this approver can decide now.")
@click.option("--fallback", is_flag=True, help="Only the fallback queue (nobody can decide).")
@json_option
@pass_ctx
def list_cmd(ctx: Context, approver_id: str | None, fallback: bool, as_json: bool) -> None:
    """Open approval steps, the most urgent first: role, due time (overdue marked), amount,
    and who can decide each now (delegates shown as `DELEGATE for APPROVER`). A step in the
    FALLBACK queue has nobody who may decide it: fix the approver master or escalate."""
    settings = ctx.running(kafka=False)
    now = utcnow()
    with connect(settings) as conn:
        found = commands.pending(conn, now, approver_id=approver_id, fallback_only=fallback)
    if as_json:
        emit_json([p.as_json(now) for p in found])
        return
    if not found:
        out.print("no approval step is waiting" + (f" for {approver_id}" if approver_id else ""))
        return
    table = Table("requisition", "step", "role", "status", "due", "amount", "can decide")
    for p in found:
        due = p.due_at.isoformat(timespec="minutes") if p.due_at else "-"
        if p.overdue(now):
            due = f"[red]{due} overdue[/red]"
        table.add_row(
            p.requisition_id, str(p.step), "/".join(p.roles), p.status, due,
            f"{p.total:,.2f} {p.currency}", ", ".join(p.deciders) or "[red]nobody[/red]",
        )  # fmt: skip
    out.print(table)


@approvals_group.command("escalate")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-TIME",
    help="Treat this as the current time (UTC when no offset), e.g. to test SLAs.",
)
@pass_ctx
def escalate_cmd(ctx: Context, now_text: str | None) -> None:
    """The SLA sweep: each open step past its due time is escalated to the next level of the
    spend ladder (above every role on its route), or to the fallback queue above the top.
    Run it periodically (e.g. every minute); running it twice escalates once."""
    now = _parse_now(now_text)
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        records = commands.overdue(conn, PoliciesInForce()(conn), now)
        commands.queue(conn, catalog, records)
        conn.commit()
    for r in records:
        out.print(f"escalated {r['requisition_id']} step {r['step']} to {r['to_role']}")
    out.print(f"{len(records)} step(s) escalated")


@cli.command("approve")
@click.argument("requisition_id")
@click.option("--as", "approver_id", required=True, help="Your approver id.")
@click.option("--comment", help="A comment kept with the decision.")
@click.option("--for", "on_behalf_of", help="The approver you act for as their delegate.")
@pass_ctx
def approve_cmd(
    ctx: Context,
    requisition_id: str,
    approver_id: str,
    comment: str | None,
    on_behalf_of: str | None,
) -> None:
    """Grant the open approval step of REQUISITION_ID as approver --as.

    Refused with the reason (exit 1) when you may not: not your role or scope, beyond your
    authority limit, your own requisition, or a second decision of yours on its chain."""
    _decide(ctx, requisition_id, approver_id, True, comment, on_behalf_of)


@cli.command("deny")
@click.argument("requisition_id")
@click.option("--as", "approver_id", required=True, help="Your approver id.")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@pass_ctx
def deny_cmd(ctx: Context, requisition_id: str, approver_id: str, reason: str) -> None:
    """Deny the open approval step of REQUISITION_ID as approver --as: the requisition is
    denied and goes no further."""
    _decide(ctx, requisition_id, approver_id, False, reason, None)


def _decide(
    ctx: Context,
    requisition_id: str,
    approver_id: str,
    granted: bool,
    text: str | None,
    on_behalf_of: str | None,
) -> None:
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        record = commands.decision(
            conn, requisition_id, approver_id, granted=granted, now=utcnow(), text=text,
            on_behalf_of=on_behalf_of,
        )  # fmt: skip
        commands.queue(conn, catalog, [record])
        conn.commit()
    verb = "granted" if granted else "denied"
    behalf = record.get("on_behalf_of")
    who = approver_id + (f" for {behalf}" if behalf else "")
    out.print(
        f"step {record['step']} of {requisition_id} {verb} by {who} "
        f"(event {record['envelope']['event_id']}, queued in the outbox for the relay)"
    )


def _parse_now(text: str | None) -> dt.datetime:
    if text is None:
        return utcnow()
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time, got {text!r}", param_hint="--now"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
