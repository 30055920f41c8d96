"""Stock rules (pure, no I/O): movement directions and FEFO allocation.

FEFO (first expiry, first out): an outgoing movement that names no lot takes from the lots with
the earliest expiry first, lots without an expiry last and the no-lot bucket (lot ``""``) after
them. An ISSUE or TRANSFER_OUT skips lots already expired on the movement's day (expired stock
is written off, not issued); a WRITE_OFF or a negative ADJUSTMENT takes them first. Taking more
than the eligible stock puts the shortfall on the no-lot bucket, which goes negative and is
flagged (stock was physically taken: refusing it would only hide the miscount).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

#: Direction of each movement kind; ADJUSTMENT carries its own sign.
DIRECTION = {
    "RECEIPT": 1,
    "TRANSFER_IN": 1,
    "RETURN": 1,
    "ADJUSTMENT": 1,
    "ISSUE": -1,
    "TRANSFER_OUT": -1,
    "WRITE_OFF": -1,
}
#: Outgoing kinds that must not take expired stock.
SKIPS_EXPIRED = frozenset({"ISSUE", "TRANSFER_OUT"})
NO_LOT = ""


@dataclass(frozen=True)
class Lot:
    """Stock of one lot at one place, in the stocking unit (``NO_LOT``: stock without a lot)."""

    lot_number: str
    expiry: dt.date | None
    on_hand: Decimal


def is_expired(expiry: dt.date | None, day: dt.date) -> bool:
    """A lot is usable through its expiry date and expired from the day after."""
    return expiry is not None and expiry < day


def fefo_key(lot: Lot) -> tuple[bool, bool, dt.date, str]:
    """FEFO order: earliest expiry first, lots without one after them, the no-lot bucket last."""
    no_lot = lot.lot_number == NO_LOT
    return (no_lot, lot.expiry is None, lot.expiry or dt.date.max, lot.lot_number)


def allocate(
    lots: Iterable[Lot], quantity: Decimal, *, day: dt.date, skip_expired: bool
) -> list[tuple[str, Decimal]]:
    """(lot, quantity) pairs taking ``quantity`` (> 0) FEFO from ``lots``: they sum to
    ``quantity``, take only what a lot has (the shortfall, if any, goes to ``NO_LOT``), and
    never take from a lot while an eligible lot expiring earlier still has stock."""
    remaining = quantity
    taken: dict[str, Decimal] = {}
    for lot in sorted(lots, key=fefo_key):
        if remaining <= 0:
            break
        if lot.on_hand <= 0 or (skip_expired and is_expired(lot.expiry, day)):
            continue
        take = min(lot.on_hand, remaining)
        taken[lot.lot_number] = take
        remaining -= take
    if remaining > 0:
        taken[NO_LOT] = taken.get(NO_LOT, Decimal(0)) + remaining
    return list(taken.items())


def shortfall(lots: Sequence[Lot]) -> Decimal:
    """How far below zero the lots are (0 when none is negative)."""
    return -sum((lot.on_hand for lot in lots if lot.on_hand < 0), Decimal(0))
