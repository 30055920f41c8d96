"""`supplybus run PROCESSOR... | all`."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from supplybus.consumers.approvals.sweep import EscalationSweep
from supplybus.consumers.finance.payment_dispatch import PaymentDispatcher
from supplybus.consumers.processors import BUILTIN, load_processor
from supplybus.consumers.procurement.dispatch import PoDispatcher
from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.dlq_gauges import DeadLetterGauges
from supplybus.consumers.runtime.runner import Background, Runner
from supplybus.metrics import Metrics
from supplybus.ops.cli.invoices import payments_folder
from supplybus.ops.cli.orders import folder_target
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
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (dead-letter gauges every 30 s).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per batch.")
@click.option(
    "--assignment-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="With --until-idle: exit 1 when a lane still holds no partitions after this many "
    "seconds (another member of the group holds them, so idleness cannot be judged).",
)
@click.option(
    "--dead-letter-budget",
    metavar="CONSECUTIVE[/MAX_IN_WINDOW[/WINDOW]]",
    callback=lambda ctx, param, value: _budget(value),
    help="Halt a lane (committing nothing) past this many dead letters in a row, or in the "
    "last WINDOW records, per topic. Default 5/100/1000.",
)
@click.option(
    "--new",
    is_flag=True,
    help="The processors this run registers are new, even where one consumes the same event "
    "types as a registered processor with applied events (which looks like a rename: see "
    "`supplybus processors rename`).",
)
@pass_ctx
def run(
    ctx: Context,
    names: tuple[str, ...],
    until_idle: bool,
    idle_seconds: float,
    metrics_port: int | None,
    batch_size: int | None,
    assignment_timeout: float,
    dead_letter_budget: DeadLetterBudget | None,
    new: bool,
) -> None:
    """Run processors (and the outbox relay) until SIGTERM/SIGINT.

    NAMES are built-in processors (`supplybus processors builtin`), `relay`, `po-dispatch` (the
    delivery of purchase orders to the outbound folder, as `supplybus po dispatch`),
    `payment-dispatch` (payment-run files, as `supplybus payments dispatch`),
    `approvals-sweep` (escalates overdue approval steps every 30 s, as `supplybus approvals
    escalate`), `all` (every built-in and those four loops), or `package.module:attribute`
    naming your own Processor. Each processor runs a routine and a critical lane; effects are
    applied exactly once (idempotency ledger and transactional outbox in one PostgreSQL
    transaction, then the Kafka offsets).

    \b
    Exit codes: 0 done; 1 a lane or the relay failed (e.g. the dead-letter budget halted it),
    or a lane got no partitions in time; 3 stopped while a batch waited on a retry (its
    records were left unapplied and are consumed again at the next start).

    \b
    Examples:
      supplybus run stock-balances relay
      supplybus run all --until-idle --idle-seconds 10
      supplybus run mypkg.sync:processor --metrics-port 9108
    """
    settings = ctx.running()
    configure_json_logging(settings.log_level if not ctx.verbose else "DEBUG")
    loops = ("relay", "po-dispatch", "payment-dispatch", "approvals-sweep")
    wanted = [*list(BUILTIN), *loops] if "all" in names else list(names)
    processors = [load_processor(n) for n in wanted if n not in loops]
    if batch_size:
        processors = [replace(p, batch_size=batch_size) for p in processors]
    if dead_letter_budget:
        processors = [replace(p, dead_letter_budget=dead_letter_budget) for p in processors]
    metrics = Metrics()
    if metrics_port:
        metrics.serve(metrics_port)
    dispatchers: list[Background] = []
    if "po-dispatch" in wanted:  # POs to the outbound folder (docs/outbound-po.md)
        dispatchers.append(PoDispatcher(settings, folder_target(settings, None), metrics))
    if "payment-dispatch" in wanted:  # payment-run files (docs/outbound-payments.md)
        dispatchers.append(PaymentDispatcher(settings, payments_folder(settings, None)))
    if "approvals-sweep" in wanted:  # the approval SLA: overdue steps escalated
        dispatchers.append(EscalationSweep(settings, metrics))
    if metrics_port:  # supplybus_dead_letters_open, _oldest_age_seconds every 30 s
        dispatchers.append(DeadLetterGauges(settings, metrics))
    runner = Runner(
        settings,
        processors,
        relay="relay" in wanted,
        background=dispatchers,
        until_idle=idle_seconds if until_idle else None,
        metrics=metrics,
        assignment_timeout=assignment_timeout if until_idle else None,
        new=new,
    )
    sys.exit(runner.run())


def _budget(value: str | None) -> DeadLetterBudget | None:
    if not value:
        return None
    parts = value.split("/")
    if len(parts) > 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(
            f"expected CONSECUTIVE[/MAX_IN_WINDOW[/WINDOW]] as positive integers, got {value!r}"
        )
    names = ("max_consecutive", "max_in_window", "window")
    return DeadLetterBudget(**{n: int(p) for n, p in zip(names, parts, strict=False)})
