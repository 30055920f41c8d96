"""`supplybus ingest`: events from source systems that cannot publish themselves.

`ingest files DIR --mapping M.yaml [--watch]` takes CSV exports dropped in a folder
(docs/file-drops.md).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from supplybus.events import jsonio
from supplybus.metrics import Metrics
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.ops.logs import configure_json_logging
from supplybus.producers.files.ingest import FileIngest, Outcome
from supplybus.producers.files.mapping import load_mapping
from supplybus.producers.files.watch import DropFolder, run_once, watch


@cli.group()
def ingest() -> None:
    """Take events in from legacy sources: CSV file drops (`ingest files`)."""


@ingest.command("files")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="YAML mapping of the CSV columns onto one event type (schemas/mappings/*.yaml).",
)
@click.option("--watch", "watching", is_flag=True, help="Keep polling until SIGTERM/SIGINT.")
@click.option(
    "--reject-limit",
    type=click.IntRange(min=0),
    help="More bad lines than this fail the whole file (nothing published); default: the "
    "mapping's reject_limit, else no limit.",
)
@click.option("--pattern", default="*.csv", show_default=True, help="Which files to take.")
@click.option(
    "--marker",
    is_flag=True,
    help="Take a file only once its marker <file>.done exists (written after the file).",
)
@click.option(
    "--settle-seconds",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Without --marker: a file is complete when its size and mtime stay the same this long.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="With --watch: seconds between polls.",
)
@click.option("--done-dir", type=click.Path(path_type=Path), help="Default: DIR/done.")
@click.option("--failed-dir", type=click.Path(path_type=Path), help="Default: DIR/failed.")
@click.option("--metrics-port", type=int, help="With --watch: serve /metrics on this port.")
@json_option
@pass_ctx
def files(
    ctx: Context,
    directory: Path,
    mapping_path: Path,
    watching: bool,
    reject_limit: int | None,
    pattern: str,
    marker: bool,
    settle_seconds: float,
    interval: float,
    done_dir: Path | None,
    failed_dir: Path | None,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """Publish the CSV files dropped in DIRECTORY as events, mapped by --mapping.

    Each line becomes one event, its id derived from the file's content and the line number:
    a file dropped again is recognised ("already ingested") and publishes nothing. Bad lines
    go to done/<file>.rejects.csv (line, reason, original text) while the good ones are
    published; over the reject limit the file goes to failed/ and nothing is published.
    Files still being written are left for the next poll. DIR, done/ and failed/ must be on
    one filesystem (files are moved with an atomic rename).

    \b
    Exit codes: 0 every complete file done (or already ingested); 1 a file failed;
    2 a bad mapping or an unreachable service (one line).

    \b
    Examples:
      supplybus ingest files /drop/usage --mapping schemas/mappings/item-usage.yaml
      supplybus ingest files /drop/counts --mapping counts.yaml --watch --marker
    """
    mapping = load_mapping(mapping_path)
    settings = ctx.running()
    configure_json_logging(settings.log_level if not ctx.verbose else "DEBUG")
    metrics = Metrics()
    if watching and metrics_port:
        metrics.serve(metrics_port)
    folder = DropFolder(directory, pattern, marker)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal or as_json,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        ingestor = FileIngest(
            settings,
            mapping,
            done_dir=done_dir or directory / "done",
            failed_dir=failed_dir or directory / "failed",
            reject_limit=reject_limit,
            metrics=metrics,
            progress=progress,
        )
        if watching:
            _watch(folder, ingestor, interval, as_json)
            return
        outcomes, waiting = run_once(folder, ingestor, settle_s=settle_seconds)
    if as_json:
        emit_json({
            "files": [o.as_dict() for o in outcomes],
            "not_complete": [p.name for p in waiting],
        })  # fmt: skip
    else:
        for outcome in outcomes:
            out.print(describe(outcome))
        for path in waiting:
            out.print(f"{path.name}: not complete yet (still being written, or no marker): left")
        if not outcomes and not waiting:
            out.print(f"{directory}: no files matching {pattern}")
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)


def _watch(folder: DropFolder, ingestor: FileIngest, interval: float, as_json: bool) -> None:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def report(outcome: Outcome) -> None:
        if as_json:
            click.echo(jsonio.dumps(outcome.as_dict()))
        else:
            out.print(describe(outcome))

    watch(folder, ingestor, interval_s=interval, stop=lambda: stopping, on_outcome=report)


def describe(outcome: Outcome) -> str:
    """One line per file, for people."""
    if outcome.status == "done":
        rejects = (
            f", {outcome.rejected} rejected (see {outcome.rejects})" if outcome.rejected else ""
        )
        return f"{outcome.name}: {outcome.accepted} published{rejects}; moved to {outcome.moved_to}"
    if outcome.status == "already-ingested":
        return f"{outcome.name}: already ingested, nothing published; moved to {outcome.moved_to}"
    if outcome.status == "failed":
        rejects = f" (see {outcome.rejects})" if outcome.rejects else ""
        return f"{outcome.name}: FAILED: {outcome.message}{rejects}; moved to {outcome.moved_to}"
    return f"{outcome.name}: left in place: {outcome.message}"
