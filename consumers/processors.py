"""Finding processors by name: the built-in ones, or any `package.module:attribute`."""

from __future__ import annotations

import importlib

from supplybus.consumers.runtime.processor import Processor
from supplybus.errors import ConfigError

BUILTIN: dict[str, str] = {
    "stock-balances": "supplybus.consumers.inventory.balances:processor",
    "masterdata": "supplybus.consumers.masterdata.processor:processor",
    "requisitions": "supplybus.consumers.procurement.processor:requisitions",
    "approval-policies": "supplybus.consumers.approvals.published:processor",
    "approvals": "supplybus.consumers.approvals.processor:approvals",
    "purchase-orders": "supplybus.consumers.procurement.orders:processor",
    "budget-spend": "supplybus.consumers.finance.processor:processor",
    "invoice-match": "supplybus.consumers.finance.matching_processor:processor",
    "receiving": "supplybus.consumers.inventory.receiving:processor",
}


def load_processor(spec: str) -> Processor:
    """A processor by built-in name or import path (`module:attribute`, a Processor or a
    function returning one)."""
    path = BUILTIN.get(spec, spec)
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ConfigError(
            f"unknown processor {spec!r}; expected one of {', '.join(sorted(BUILTIN))}, "
            "'relay', 'all', or module:attribute"
        )
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"processor {spec!r}: cannot import {path} ({exc})") from exc
    found = target() if callable(target) and not isinstance(target, Processor) else target
    if not isinstance(found, Processor):
        raise ConfigError(f"processor {spec!r}: {path} is not a Processor")
    return found
