"""Field checks of a policy file: each failure is one line naming the file, the field and what
was expected (a ``ConfigError``)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from supplybus.errors import ConfigError

_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ROLE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_MINUTES = {"m": 1, "h": 60, "d": 1440}


class FieldParser:
    """Field checks of one file; each failure is one line naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, expected: str, got: object) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: expected {expected}, got {got!r}")

    def name(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not _RULE_ID.fullmatch(value):
            raise self.error(path, "an id of letters, digits, '.', '_' or '-'", value)
        return value

    def choice(self, value: object, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.error(path, f"one of {', '.join(choices)}", value)
        return str(value)

    def seq(self, value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "a list", kind(value))
        return value

    def duration(self, value: object, path: str, *, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise self.error(path, "a duration such as 30m, 4h or 2d", value)
        return int(match[1]) * _MINUTES[match[2]]

    def amount(self, value: object, path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(path, 'an amount as a string such as "5000.00" or an integer', value)
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise self.error(path, "a decimal amount", value) from None
        if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -4:  # type: ignore[operator]
            raise self.error(path, "an amount >= 0 with at most 4 decimals", value)
        return amount

    def rule(
        self, value: object, path: str, fields: set[str], *, optional: bool = False
    ) -> dict[str, Any]:
        """A rule mapping: ``id`` plus ``fields``, each checked; absent fields are None."""
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"a mapping with id and {listed(fields)}", kind(value))
        unknown = sorted(str(k) for k in value if k not in fields | {"id"})
        if unknown:
            raise ConfigError(
                f"{self.source}: {path}.{unknown[0]}: unknown field; expected one of id, "
                f"{listed(fields)}"
            )
        rule: dict[str, Any] = {"id": self.name(value.get("id"), f"{path}.id")}
        for key in sorted(fields):
            got = value.get(key)
            where = f"{path}.{key}"
            if got is None:
                rule[key] = () if key == "roles" else None
            elif key in ("from", "below"):
                rule[key] = self.amount(got, where)
            elif key == "sla":
                rule[key] = self.duration(got, where)
            elif key == "role":
                rule[key] = self.role(got, where)
            else:
                roles = self.seq(got, where)
                rule[key] = tuple(self.role(r, f"{where}[{i}]") for i, r in enumerate(roles))
        return rule

    def role(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not _ROLE.fullmatch(value):
            raise self.error(path, "a role in capitals such as DIRECTOR", value)
        return value

    def table(
        self, value: object, path: str, names: tuple[str, ...], fields: set[str]
    ) -> dict[str, dict[str, Any] | None]:
        """A mapping name -> rule; a null rule is kept as None (an attempt to drop one)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"a mapping of {', '.join(names)} to rules", kind(value))
        table: dict[str, dict[str, Any] | None] = {}
        for name in sorted(value, key=str):
            if name not in names:
                raise ConfigError(
                    f"{self.source}: {path}.{name}: unknown name; "
                    f"expected one of {', '.join(names)}"
                )
            rule = value[name]
            table[name] = None if rule is None else self.rule(rule, f"{path}.{name}", fields)
        return table


def kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def listed(choices: set[str]) -> str:
    return ", ".join(sorted(choices))


def duration_text(minutes: int) -> str:
    """Minutes as the policy files write them: 30m, 4h, 2d."""
    for unit in ("d", "h"):
        if minutes % _MINUTES[unit] == 0:
            return f"{minutes // _MINUTES[unit]}{unit}"
    return f"{minutes}m"
