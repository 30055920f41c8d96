"""Outbound targets of purchase orders: where a PO document goes (supplier, ERP, a share).

A target takes one PO at a time: ``deliver(po_number, document)`` returns where the document
went, raises ``TargetUnavailable`` when the target cannot take it now (the PO waits and is
retried), or a ``PermanentError`` when retrying cannot help. Delivering the same document
twice must be harmless: the dispatcher re-delivers after a crash between the delivery and
its bookkeeping. The layout of the document is docs/outbound-po.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from supplybus.errors import PermanentError, TargetUnavailable

#: A PO number as a file name: letters, digits, '-', '_' and '.', not starting with '.'.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


class PurchaseOrderTarget(Protocol):
    """Where purchase orders are delivered."""

    @property
    def name(self) -> str:
        """The target, for logs and the ``delivered_to`` column (e.g. ``folder:/srv/po``)."""
        ...

    def deliver(self, po_number: str, document: bytes) -> str:
        """Deliver one PO document; returns where it went. Raises ``TargetUnavailable``."""
        ...


class DocumentConflict(PermanentError):
    """The target already holds a different document under this PO number: never replaced."""

    code = "PO_DOCUMENT_CONFLICT"


class FolderTarget:
    """One file per PO, ``<folder>/<po_number>.json``, written atomically.

    The document goes to a temporary file in the same folder (its name starts with '.'),
    is flushed and fsynced, renamed over the final name with ``os.replace``, and the folder
    is fsynced: a reader sees the whole file or none, and a delivered file survives a power
    cut. The folder must exist: a missing or unwritable folder (an unmounted share) is a
    target that is down. A file of that name with the same bytes is a delivery already made;
    with other bytes it is never overwritten (``DocumentConflict``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return f"folder:{self.path}"

    def file_for(self, po_number: str) -> Path:
        """The file a PO is delivered to; refuses a PO number that is not a safe file name."""
        if not _SAFE_NAME.fullmatch(po_number):
            raise PermanentError(
                f"PO number {po_number!r}: not usable as a file name in {self.path} "
                "(letters, digits, '-', '_', '.'; not starting with '.')"
            )
        return self.path / f"{po_number}.json"

    def deliver(self, po_number: str, document: bytes) -> str:
        final = self.file_for(po_number)
        if not self.path.is_dir():
            raise TargetUnavailable(
                f"outbound folder {self.path} does not exist or is not a folder "
                "(is the share mounted?)"
            )
        if self._already_there(final, document):
            return str(final)
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{po_number}.", suffix=".tmp", dir=self.path)
        except OSError as exc:
            raise TargetUnavailable(f"outbound folder {self.path}: cannot write ({exc})") from exc
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(document)
                file.flush()
                os.fsync(file.fileno())
            if self._already_there(final, document):  # written meanwhile by someone else
                return str(final)
            os.replace(temp, final)
            _fsync_dir(self.path)
        except OSError as exc:
            raise TargetUnavailable(f"{final}: cannot write ({exc})") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return str(final)

    def _already_there(self, final: Path, document: bytes) -> bool:
        """True when ``final`` holds exactly ``document``; raises if it holds anything else."""
        try:
            existing = final.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise TargetUnavailable(f"{final}: cannot read ({exc})") from exc
        if existing != document:
            raise DocumentConflict(
                f"{final} already exists with other content ({len(existing)} bytes, this PO "
                f"document {len(document)} bytes): not overwritten; move it away once the "
                "receiving side has checked it, and the PO is delivered at the next attempt"
            )
        return True


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable. A file system that cannot fsync a folder (EINVAL,
    e.g. some network shares) is accepted; any other failure is raised."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
