"""`supplybus policies check | route | publish`: the federated approval policies."""

from __future__ import annotations

import getpass
from contextlib import closing
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from supplybus.adapters.kafka import read_records
from supplybus.config import Settings
from supplybus.consumers.approvals.federation import Policy, PolicySet, load_policies
from supplybus.consumers.approvals.fields import duration_text
from supplybus.consumers.approvals.policy import CATEGORIES, URGENCIES, PolicyDoc, supersedes
from supplybus.consumers.approvals.routing import Request, route
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.producers.publisher import Publisher

_DIR = click.argument(
    "directory", required=False, type=click.Path(path_type=Path, file_okay=False, exists=True)
)


@cli.group()
def policies() -> None:
    """Approval policies: an enterprise standard tightened per entity and facility.

    The policies are the *.yaml files of a folder (default: the shipped schemas/policies;
    format in its README.md). An override may be stricter, never looser.
    """


@policies.command("check")
@_DIR
@json_option
def check_cmd(directory: Path | None, as_json: bool) -> None:
    """Validate every file of DIRECTORY and print the merged policy of each scope."""
    found = load_policies(directory)
    scopes = _scopes(found)
    if as_json:
        emit_json([{"scope": name} | policy_json(p) for name, p in scopes])
        return
    for name, policy in scopes:
        layers = " + ".join(f"{p} v{v}" for p, v in policy.layers)
        table = Table("kind", "name", "rule", "roles", "from", "sla", "from policy",
                      title=f"{name}: {layers}", title_justify="left")  # fmt: skip
        for row in _rows(policy):
            table.add_row(*row)
        out.print(table)
    out.print(f"{len(found.docs)} policy file(s) valid")


@policies.command("route")
@click.option("--entity", "entity_id", required=True, help="Legal entity of the requisition.")
@click.option("--facility", "facility_id", help="Facility of the requisition.")
@click.option("--amount", required=True, help="The requisition's total, e.g. 12000.00.")
@click.option("--currency", default="USD", show_default=True)
@click.option(
    "--urgency", type=click.Choice(URGENCIES, case_sensitive=False), default="ROUTINE",
    show_default=True,
)  # fmt: skip
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="An item category on a line (repeatable): capital, controlled-substance, med-surg, ...",
)
@click.option("--cost-center", default="-", help="Cost center (shown only).")
@click.option("--grant-funded", is_flag=True, help="The cost center is grant-funded.")
@click.option("--off-contract", is_flag=True, help="A line is off contract.")
@click.option("--over-budget", is_flag=True, help="The request exceeds the available budget.")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Policies of this folder instead of the shipped ones.")  # fmt: skip
@json_option
def route_cmd(
    entity_id: str,
    facility_id: str | None,
    amount: str,
    currency: str,
    urgency: str,
    categories: tuple[str, ...],
    cost_center: str,
    grant_funded: bool,
    off_contract: bool,
    over_budget: bool,
    directory: Path | None,
    as_json: bool,
) -> None:
    """The approval route a requisition would take, and the rules that demand each step."""
    try:
        total = Decimal(amount)
    except InvalidOperation:
        raise ConfigError(f"--amount: expected a decimal amount, got {amount!r}") from None
    if not total.is_finite() or total < 0:
        raise ConfigError(f"--amount: expected an amount >= 0, got {amount!r}")
    request = Request(
        entity_id=entity_id,
        facility_id=facility_id,
        cost_center_id=cost_center,
        urgency=urgency.upper(),
        total=total,
        currency=currency.upper(),
        categories=frozenset(_category(c) for c in categories),
        grant_funded=grant_funded,
        off_contract=off_contract,
        over_budget=over_budget,
    )
    found = load_policies(directory)
    result = route(request, found.effective(entity_id, facility_id))
    if as_json:
        emit_json(result.to_json())
        return
    layers = ", ".join(f"{p} v{v}" for p, v in result.policies)
    if result.auto_approved:
        out.print(f"auto-approved by {result.auto_approved_by} ({layers})")
        return
    table = Table("#", "role", "reason", "sla", "rule", "sla set by", title=f"policies: {layers}",
                  title_justify="left")  # fmt: skip
    for n, s in enumerate(result.steps, 1):
        rules = ", ".join((s.rule, *s.also))
        table.add_row(str(n), s.role, s.reason, duration_text(s.sla_minutes), rules, s.sla_rule)
    out.print(table)


@policies.command("publish")
@_DIR
@pass_ctx
def publish_cmd(ctx: Context, directory: Path | None) -> None:
    """Publish every policy file as ApprovalPolicyUpserted: all valid, or nothing is sent.

    Event ids derive from policy id, version and document checksum: publishing the same
    files again yields the same ids, which processors skip. A file whose document changed
    under a version already on the topic, or older than it, is refused.
    """
    found = load_policies(directory)
    records = [policy_record(doc, getpass.getuser()) for doc in found.docs]
    running = ctx.running(database=False)
    with Publisher.from_settings(running) as publisher:
        published = _published(running, publisher.catalog)
        stale = [d for d in found.docs if not supersedes(published.get(d.policy_id), d)]
        for doc in stale:
            version = published[doc.policy_id][0]
            if doc.version < version:
                raise ConfigError(
                    f"{doc.source}: version: {doc.policy_id} v{version} is published; expected "
                    f"version {version} or more, got {doc.version}"
                )
        prepared = publisher.publish_all(records, labels=[d.source for d in found.docs])
        publisher.flush()
    topics = ", ".join(sorted({p.topic for p in prepared}))
    again = f" ({len(stale)} unchanged)" if stale else ""
    out.print(f"published {len(prepared)} ApprovalPolicyUpserted event(s) to {topics}{again}")


def _published(settings: Settings, catalog: EventCatalog) -> dict[str, tuple[int, str]]:
    """(version, checksum) of the newest published version of each policy, as far as the topic
    shows it within a quiet second (a guard for operators; processors check again)."""
    spec = catalog.topics.topic_for("ApprovalPolicyUpserted")
    newest: dict[str, tuple[int, str]] = {}
    lanes = {spec.name: spec.partitions}
    with closing(read_records(settings, lanes, quiet_s=1.0, timeout_s=15.0)) as records:
        for msg in records:
            r = catalog.codec.decode(msg.value()).record
            if r["version"] >= newest.get(r["policy_id"], (0, ""))[0]:
                newest[r["policy_id"]] = (r["version"], r["checksum"])
    return newest


def policy_record(doc: PolicyDoc, actor: str) -> dict[str, Any]:
    """The ApprovalPolicyUpserted event of one policy file."""
    entity = doc.scope_id if doc.scope == "ENTITY" else doc.entity_id
    envelope = new_envelope(
        "ApprovalPolicyUpserted",
        source_system="supplybus.policies",
        entity_id=entity or "ENTERPRISE",
        facility_id=doc.scope_id if doc.scope == "FACILITY" else None,
        actor=actor,
        event_id=deterministic_id(
            "ApprovalPolicyUpserted", doc.policy_id, doc.version, doc.checksum
        ),
    )
    return {
        "envelope": envelope,
        "policy_id": doc.policy_id,
        "scope": doc.scope,
        "scope_id": doc.scope_id,
        "version": doc.version,
        "document": doc.document,
        "checksum": doc.checksum,
    }


def policy_json(policy: Policy) -> dict[str, Any]:
    """A merged policy as JSON: every rule with its id and the policy it came from."""

    def req(r: Any) -> dict[str, Any]:
        return {"id": r.id, "roles": list(r.roles), "from": str(r.start),
                "sla_minutes": r.sla_minutes, "origin": r.origin}  # fmt: skip

    a = policy.auto_approve
    return {
        "policies": [{"policy_id": p, "version": v} for p, v in policy.layers],
        "currency": policy.currency,
        "default_sla_minutes": policy.default_sla,
        "auto_approve": {"id": a.id, "below": str(a.below), "origin": a.origin},
        "spend_bands": [
            {
                "id": b.id,
                "role": b.role,
                "from": str(b.start),
                "sla_minutes": b.sla_minutes,
                "origin": b.origin,
            }
            for b in policy.bands
        ],
        "categories": {n: req(r) for n, r in sorted(policy.categories.items())},
        "conditions": {n: req(r) for n, r in sorted(policy.conditions.items())},
        "urgency": {
            n: {"id": u.id, "sla_minutes": u.sla_minutes, "origin": u.origin}
            for n, u in sorted(policy.urgency.items())
        },
    }


def _scopes(found: PolicySet) -> list[tuple[str, Policy]]:
    scopes = [("ENTERPRISE", found.enterprise)]
    scopes += [(f"ENTITY {e}", p) for e, p in sorted(found.entities.items())]
    scopes += [(f"FACILITY {f}", p) for f, p in sorted(found.facilities.items())]
    return scopes


def _rows(policy: Policy) -> list[tuple[str, ...]]:
    a = policy.auto_approve
    rows: list[tuple[str, ...]] = [("auto-approve", "below", a.id, "", str(a.below), "", a.origin)]
    rows += [("spend band", b.role, b.id, b.role, str(b.start), duration_text(b.sla_minutes),
              b.origin) for b in policy.bands]  # fmt: skip
    for kind, table in (("category", policy.categories), ("condition", policy.conditions)):
        rows += [(kind, n, r.id, ", ".join(r.roles), str(r.start), duration_text(r.sla_minutes),
                  r.origin) for n, r in sorted(table.items())]  # fmt: skip
    rows += [("urgency", n, u.id, "", "", duration_text(u.sla_minutes), u.origin)
             for n, u in sorted(policy.urgency.items())]  # fmt: skip
    return rows


def _category(text: str) -> str:
    name = text.strip().upper().replace("-", "_").replace(" ", "_")
    if name not in CATEGORIES:
        choices = ", ".join(c.lower().replace("_", "-") for c in CATEGORIES)
        raise ConfigError(f"--category: expected one of {choices}, got {text!r}")
    return name
