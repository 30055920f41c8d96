"""Published approval policies: the ``approval-policies`` processor, and the set in force.

`supplybus policies publish` sends every policy file as ApprovalPolicyUpserted. This processor
keeps the newest version of each document in ``approval_policies`` (``policy.supersedes``: an
older version or the same document again changes nothing; the same version with other content
is refused), after checking the document's checksum and that the set it completes is valid (no
override looser than the policy above it; ``PolicySet``). A refused document is dead-lettered
with the one-line reason and its key held.

``PoliciesInForce`` gives the requisitions and approvals processors the same set: the
published one once it has an enterprise policy, the shipped files before (a fresh install).
The set is rebuilt only when a (policy, version, checksum) changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.approvals.federation import PolicySet, load_policies
from supplybus.consumers.approvals.policy import parse_policy, supersedes
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError, ConfigError

NAME = "approval-policies"
_STORED = "SELECT policy_id, version, checksum, document FROM approval_policies ORDER BY policy_id"
_UPSERT = """
INSERT INTO approval_policies (policy_id, scope, scope_id, version, document, checksum,
    published_at, event_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (policy_id) DO UPDATE SET scope = EXCLUDED.scope, scope_id = EXCLUDED.scope_id,
    version = EXCLUDED.version, document = EXCLUDED.document, checksum = EXCLUDED.checksum,
    published_at = EXCLUDED.published_at, event_id = EXCLUDED.event_id, updated_at = now()
"""


def processor() -> Processor:
    return Processor(
        name=NAME,
        consumes=("ApprovalPolicyUpserted",),
        handle=handle,
        description="Keeps the newest published version of each approval policy document.",
        on_dead_letter="hold_key",
    )


def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    stored = {pid: (v, c, d) for pid, v, c, d in conn.execute(_STORED)}
    entries: list[audit.AuditEntry] = []
    for event in events:
        r = event.record
        pid, label = str(r["policy_id"]), f"policy {r['policy_id']} v{r['version']}"
        if hashlib.sha256(str(r["document"]).encode()).hexdigest() != r["checksum"]:
            raise BusinessRuleError(f"{label}: checksum: expected the SHA-256 of the document")
        try:
            doc = parse_policy(str(r["document"]), label)
        except ConfigError as exc:
            raise BusinessRuleError(str(exc)) from exc
        if (doc.policy_id, doc.version) != (pid, r["version"]):
            raise BusinessRuleError(
                f"{label}: the document says {doc.policy_id} v{doc.version}, the event "
                f"{pid} v{r['version']}"
            )
        published = stored.get(pid)
        if not supersedes(None if published is None else published[:2], doc):
            continue
        candidate = {**stored, pid: (doc.version, doc.checksum, doc.document)}
        _check_set(candidate, label)
        stored = candidate
        conn.execute(_UPSERT, (pid, r["scope"], r.get("scope_id"), doc.version, doc.document,
                               doc.checksum, r["envelope"]["occurred_at"],
                               str(r["envelope"]["event_id"])))  # fmt: skip
        entries.append(
            audit.from_envelope(
                r["envelope"], entity_type="policy", entity_id=pid, action="published",
                reason=f"version {doc.version} in force (sha256 {doc.checksum[:12]})",
                rule_version=f"{pid}@{doc.version}",
            )
        )  # fmt: skip
    audit.append(conn, entries)
    return []


def _check_set(docs: dict[str, tuple[int, str, str]], label: str) -> None:
    """The set is valid (once it has its enterprise policy: documents arrive in any order)."""
    parsed = [parse_policy(text, f"policy {pid} v{v}") for pid, (v, _, text) in docs.items()]
    if not any(d.scope == "ENTERPRISE" for d in parsed):
        return
    try:
        PolicySet(parsed)
    except (ConfigError, BusinessRuleError) as exc:
        raise BusinessRuleError(f"{label} refused: {exc}") from exc


class PoliciesInForce:
    """The policy set processors apply: published (``approval_policies``, once it holds an
    enterprise policy), else ``shipped`` (default: the files of schemas/policies)."""

    def __init__(self, shipped: PolicySet | None = None) -> None:
        self._shipped = shipped
        self._key: tuple[tuple[str, int, str], ...] | None = None
        self._set: PolicySet | None = None

    @property
    def shipped(self) -> PolicySet:
        if self._shipped is None:
            self._shipped = load_policies()
        return self._shipped

    def __call__(self, conn: psycopg.Connection) -> PolicySet:
        rows = conn.execute(
            "SELECT policy_id, version, checksum, scope FROM approval_policies ORDER BY policy_id"
        ).fetchall()
        if not any(scope == "ENTERPRISE" for *_, scope in rows):
            return self.shipped
        key = tuple((p, v, c) for p, v, c, _ in rows)
        if key != self._key or self._set is None:
            documents = conn.execute(_STORED).fetchall()
            self._set = PolicySet.from_documents(
                (f"policy {pid} v{v}", text) for pid, v, _, text in documents
            )
            self._key = key
        return self._set
