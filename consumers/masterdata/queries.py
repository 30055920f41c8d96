"""Reading the master-data read models: one master record with its child rows, as plain data
(what `supplybus masterdata show` prints, and what other processors look up)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from supplybus.consumers.masterdata.approvers import Approver, Delegation

Found = dict[str, Any]

_HIDDEN = ("event_id", "updated_at")


def _one(conn: psycopg.Connection, query: str, key: str) -> Found | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (key,)).fetchone()
    return None if row is None else {k: v for k, v in row.items() if k not in _HIDDEN}


def _all(conn: psycopg.Connection, query: str, key: str) -> list[Found]:
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(query, (key,)).fetchall())


def item(conn: psycopg.Connection, item_id: str) -> Found | None:
    """An item with its units (unit -> factor) and contract prices, or None."""
    found = _one(conn, "SELECT * FROM items WHERE item_id = %s", item_id)
    if found is not None:
        units = _all(conn, "SELECT uom, factor FROM item_units WHERE item_id = %s", item_id)
        found["units"] = {u["uom"]: u["factor"] for u in units}
        found["contract_prices"] = _all(
            conn,
            "SELECT supplier_id, uom, amount, currency, valid_from, valid_to"
            " FROM contract_prices WHERE item_id = %s ORDER BY supplier_id, uom, valid_from",
            item_id,
        )
    return found


def supplier(conn: psycopg.Connection, supplier_id: str) -> Found | None:
    """A supplier with the number of items it has contract prices for, or None."""
    found = _one(conn, "SELECT * FROM suppliers WHERE supplier_id = %s", supplier_id)
    if found is not None:
        (count,) = _all(
            conn,
            "SELECT count(DISTINCT item_id) AS n FROM contract_prices WHERE supplier_id = %s",
            supplier_id,
        )
        found["contract_items"] = count["n"]
    return found


def cost_center(conn: psycopg.Connection, cost_center_id: str) -> Found | None:
    """A cost center with its budget per period, or None."""
    found = _one(conn, "SELECT * FROM cost_centers WHERE cost_center_id = %s", cost_center_id)
    if found is not None:
        found["budgets"] = _all(
            conn,
            "SELECT period, amount, currency FROM cost_center_budgets"
            " WHERE cost_center_id = %s ORDER BY period",
            cost_center_id,
        )
    return found


def approvers(conn: psycopg.Connection) -> dict[str, Approver]:
    """Every approver, by id, with its delegations (for ``approvers.acting_approver``)."""
    delegations: dict[str, list[Delegation]] = {}
    for aid, delegate, first, last in conn.execute(
        "SELECT approver_id, delegate_id, from_date, to_date FROM approver_delegations"
        " ORDER BY approver_id, from_date, delegate_id"
    ).fetchall():
        delegations.setdefault(aid, []).append(Delegation(delegate, first, last))
    rows = conn.execute(
        "SELECT approver_id, name, owning_entity_id, roles, limit_amount, limit_currency,"
        " cost_center_ids, facility_ids, active FROM approvers"
    ).fetchall()
    return {
        r[0]: Approver(
            approver_id=r[0],
            name=r[1],
            entity_id=r[2],
            roles=frozenset(r[3]),
            limit=r[4],
            currency=r[5],
            cost_center_ids=frozenset(r[6]),
            facility_ids=frozenset(r[7]),
            active=r[8],
            delegations=tuple(delegations.get(r[0], ())),
        )
        for r in rows
    }
