"""Named crash points for crash tests: deterministic kill -9 at a protocol point.

``SUPPLYBUS_CRASH_AT=NAME`` (or ``NAME:N``) ends the process with ``os._exit(137)``, as a
kill -9 would, the first (or N-th) time the code reaches ``reached(NAME)``. Unset, a crash
point costs one dictionary lookup. Points: ``after-db-commit`` (transaction committed, offsets
not), ``after-offset-commit``, ``mid-bisection`` (a savepoint rolled back while isolating a
failing event), ``mid-release`` (held events applied, their release not committed),
``relay-after-ack`` (the broker acknowledged, the rows are not marked sent), ``po-after-write``
(a purchase order's file is written, its delivery is not marked delivered), ``mid-replay`` (a
chunk of dead letters applied by `dlq replay`, not committed), ``poll-after-commit`` (a page of
polled rows committed with its watermark, the next not read).
"""

from __future__ import annotations

import os
import sys


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.partition(":")
    return name, int(count) if count.isdigit() else 1


_TARGET, _AT = _parse(os.environ.get("SUPPLYBUS_CRASH_AT", ""))
_seen = 0


def reached(name: str) -> None:
    """Crash here if this is the configured point (and its configured passage)."""
    global _seen
    if name != _TARGET:
        return
    _seen += 1
    if _seen >= _AT:
        sys.stderr.write(f"supplybus: crash point {name} reached ({_seen}): exiting 137\n")
        sys.stderr.flush()
        os._exit(137)
