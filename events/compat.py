"""Avro schema compatibility, following the Avro 1.11 schema resolution rules.

Pure: schemas come in as parsed JSON (what ``json.load`` returns for an ``.avsc``), are
indexed (full names, namespace inheritance, references to earlier definitions, recursive
types) and compared pairwise by the rules in :mod:`supplybus.events.compat_rules`.
:func:`can_read` answers "can a reader holding ``reader`` decode data written with
``writer``"; :func:`check` applies a registry-style compatibility mode to a new version
and its predecessors.

Where common libraries differ from the specification we follow the specification, plus
one deliberately stricter rule for logical types:

* ``decimal`` resolves only when precision and scale are both equal (a changed scale
  would shift every amount by a power of ten); other logical types must carry the same
  ``logicalType`` name on both sides. A logical type the spec says to ignore (unknown
  base type, invalid decimal parameters) is ignored, as a reader would ignore it.
* Named types match on the unqualified name (spec: "records with the same (unqualified)
  name"), or when the writer's full name is one of the reader's aliases; an alias
  without a dot is taken in the namespace of the reader type.
* A writer type read through a reader union resolves against the branch of the same type
  (same full name for named types) if there is one, else against the first branch that
  matches (promotion, alias), as the Java reference implementation does. Logical types do
  not steer this choice, so ``int`` read as ``["date", "long"]`` lands on ``date`` and is
  reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from supplybus.errors import ConfigError
from supplybus.events.compat_rules import parse, resolve

Schema: TypeAlias = str | dict[str, Any] | list[Any]
"""A schema as parsed JSON: a type name, a type object, or a union list."""

Mode = Literal[
    "BACKWARD",
    "FORWARD",
    "FULL",
    "NONE",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
]
MODES: tuple[Mode, ...] = get_args(Mode)
"""Every compatibility mode :func:`check` accepts."""


@dataclass(frozen=True)
class Incompatibility:
    """One reason the reader cannot read the writer's data.

    ``path`` locates the problem in the reader schema (``/fields/lines/items/...``;
    a union branch appears as its index), ``reason`` says what is wrong in one line.
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def can_read(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Why data written with ``writer`` cannot be read with ``reader``; ``[]`` if it can.

    Raises :class:`~supplybus.errors.ConfigError` when either schema is not valid Avro.
    """
    return [Incompatibility(path, reason) for path, reason in resolve(parse(reader), parse(writer))]


def check(
    new: Schema,
    earlier: Sequence[Schema],
    mode: Mode,
    versions: Sequence[int] | None = None,
) -> list[Incompatibility]:
    """Check ``new`` against ``earlier`` (oldest first) under a compatibility ``mode``.

    BACKWARD: ``new`` reads the previous version's data; FORWARD: the previous version
    reads ``new``'s data; FULL: both; ``*_TRANSITIVE``: against every earlier version;
    NONE: nothing is checked. ``versions`` numbers ``earlier`` (default 1..n) for the
    messages; ``new`` is numbered one above the highest, or by an extra last entry. Each
    reason starts with the failed direction, e.g. ``"BACKWARD v2 reading v1: ..."``.
    Returns ``[]`` when compatible; raises ConfigError for an invalid schema or mode.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown compatibility mode {mode!r}; expected one of {MODES}")
    numbers = list(versions) if versions is not None else list(range(1, len(earlier) + 1))
    if len(numbers) not in (len(earlier), len(earlier) + 1):
        raise ConfigError(f"{len(numbers)} version numbers for {len(earlier)} earlier schemas")
    latest = numbers.pop() if len(numbers) > len(earlier) else max(numbers, default=0) + 1
    if mode == "NONE" or not earlier:
        return []
    targets = list(zip(numbers, earlier, strict=True))
    if not mode.endswith("_TRANSITIVE"):
        targets = targets[-1:]
    found: list[Incompatibility] = []
    for number, old in targets:
        runs: list[tuple[str, Schema, Schema]] = []
        if mode.startswith(("BACKWARD", "FULL")):
            runs.append((f"BACKWARD v{latest} reading v{number}", new, old))
        if mode.startswith(("FORWARD", "FULL")):
            runs.append((f"FORWARD v{number} reading v{latest}", old, new))
        for label, reader, writer in runs:
            found += [
                Incompatibility(i.path, f"{label}: {i.reason}") for i in can_read(reader, writer)
            ]
    return found
