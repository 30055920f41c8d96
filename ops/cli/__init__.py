"""The `supplybus` command line.

A user error prints one line (``error: ...``) on stderr and exits 2; never a traceback.
"""

from __future__ import annotations

import sys

import click
import psycopg

from supplybus.errors import SupplybusError
from supplybus.ops.cli import (  # noqa: F401 - each module registers its commands
    approvals,
    audit,
    db,
    dlq,
    dlq_replay,
    events,
    finance,
    holds,
    ingest,
    ingest_db,
    invoices,
    masterdata,
    orders,
    policies,
    processing,
    processors,
    receiving,
    reconcile,
    schemas,
    serve,
    services,
    show,
    source_outbox,
    stock,
    topics,
    trace,
)
from supplybus.ops.cli.root import cli

__all__ = ["cli", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning supplybus errors into one line and exit code 2."""

    try:
        cli.main(args=argv, prog_name="supplybus", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SupplybusError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except psycopg.errors.UndefinedTable as exc:  # a database older than this supplybus
        missing = str(exc).splitlines()[0]
        click.echo(f"error: the database schema is behind ({missing}): run `supplybus db migrate`",
                   err=True)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def run() -> None:
    sys.exit(main())
