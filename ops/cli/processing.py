"""`supplybus run PROCESSOR... | all`."""

from __future__ import annotations

import sys

import click

from supplybus.consumers import registry
from supplybus.consumers.runtime.runner import Runner
from supplybus.metrics import Metrics
from supplybus.ops.cli.root import Context, cli, pass_ctx
from supplybus.ops.logs import configure_json_logging


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Stop once no new record arrived for --idle-seconds and the outbox is drained.",
)
@click.option(
    "--idle-seconds",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="How long without new records counts as idle (with --until-idle).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per batch.")
@pass_ctx
def run(
    ctx: Context,
    names: tuple[str, ...],
    until_idle: bool,
    idle_seconds: float,
    metrics_port: int | None,
    batch_size: int | None,
) -> None:
    """Run processors (and the outbox relay) until SIGTERM/SIGINT.

    NAMES are built-in processors (stock-balances), `relay`, `all` (every built-in and the
    relay), or `package.module:attribute` naming your own Processor. Each processor runs a
    routine and a critical lane; effects are applied exactly once (idempotency ledger and
    transactional outbox in one PostgreSQL transaction, then the Kafka offsets).

    \b
    Examples:
      supplybus run stock-balances relay
      supplybus run all --until-idle --idle-seconds 10
      supplybus run mypkg.sync:processor --metrics-port 9108
    """
    settings = ctx.running()
    configure_json_logging(settings.log_level if not ctx.verbose else "DEBUG")
    wanted = [*list(registry.BUILTIN), "relay"] if "all" in names else list(names)
    processors = [registry.load(n) for n in wanted if n != "relay"]
    if batch_size:
        from dataclasses import replace

        processors = [replace(p, batch_size=batch_size) for p in processors]
    metrics = Metrics()
    if metrics_port:
        metrics.serve(metrics_port)
    runner = Runner(
        settings,
        processors,
        relay="relay" in wanted,
        until_idle=idle_seconds if until_idle else None,
        metrics=metrics,
    )
    sys.exit(runner.run())
