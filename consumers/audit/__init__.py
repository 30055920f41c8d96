"""The tamper-evident audit trail: every state change of a business entity (a requisition, an
approval, a PO, ...), appended to a SHA-256 hash chain per entity by the processors that make
the change, inside their own transaction (ADR 0011).

A processor builds entries (``from_envelope`` for the event that caused the change) and calls
``append(conn, entries)``; ``history`` reads an entity's entries and ``verify`` checks every
chain. ``chain`` holds the pure parts: the canonical form, hashing and chain verification.
"""

from supplybus.consumers.audit.chain import (
    AuditEntry,
    AuditRow,
    Head,
    Problem,
    entry_hash,
    from_envelope,
    verify_chain,
)
from supplybus.consumers.audit.trail import Report, append, history, verify

__all__ = [
    "AuditEntry",
    "AuditRow",
    "Head",
    "Problem",
    "Report",
    "append",
    "entry_hash",
    "from_envelope",
    "history",
    "verify",
    "verify_chain",
]
