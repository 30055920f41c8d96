"""The root `supplybus` command group and what every command shares."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from supplybus.config import LogLevel, Settings
from supplybus.ops import services

F = TypeVar("F", bound=Callable[..., Any])
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class Context:
    """Settings read once per CLI call, on first use (so that --help needs no environment)."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
            _configure_logging(self._settings.log_level, self.verbose)
        return self._settings

    def running(self, *, kafka: bool = True, database: bool = True) -> Settings:
        """Settings pointing at running services (embedded ones are started when needed)."""
        return services.ensure_up(self.settings, kafka=kafka, database=database)


pass_ctx = click.make_pass_decorator(Context)


def _configure_logging(level: LogLevel, verbose: bool) -> None:
    logging.basicConfig(
        level="DEBUG" if verbose else level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not verbose:  # librdkafka's connection chatter would bury the one-line error
        logging.getLogger("supplybus.librdkafka").setLevel(logging.CRITICAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug output, librdkafka's included.")
@click.pass_context
def cli(click_ctx: click.Context, verbose: bool) -> None:
    """supplybus: an event backbone for hospital supply chains.

    Runs on an embedded Kafka-protocol broker and an embedded PostgreSQL under
    SUPPLYBUS_HOME (default ./.supplybus) unless KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL
    name real ones. `supplybus settings` lists every setting.
    """
    click_ctx.obj = Context(verbose)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
