"""`supplybus schemas list | check | docs`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from supplybus.events.docs import render
from supplybus.events.governance import check_store
from supplybus.events.schema_store import default_store, load_store
from supplybus.events.topics import load_catalog
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.group()
def schemas() -> None:
    """The Avro schemas in schemas/ (every version kept)."""


@schemas.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """Subjects (event types), their versions and fingerprints."""
    store = default_store()
    rows = [
        {
            "subject": sv.full_name,
            "event_type": sv.event_type,
            "version": sv.version,
            "fingerprint": sv.fingerprint.hex(),
            "file": str(sv.path.relative_to(store.directory)),
        }
        for sv in store
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("subject", "version", "fingerprint (CRC-64-AVRO)", "file")
    for r in rows:
        table.add_row(str(r["subject"]), f"v{r['version']}", str(r["fingerprint"]), str(r["file"]))
    out.print(table)


@schemas.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Check the schemas in this folder instead of the shipped ones.",
)
@json_option
def check_cmd(directory: Path | None, as_json: bool) -> None:
    """Check each schema's newest version against its earlier ones.

    Modes (BACKWARD by default, per event type in schemas/compatibility.yaml): BACKWARD,
    FORWARD, FULL, NONE and their _TRANSITIVE variants. Decimals must keep precision and scale.
    Prints each incompatibility with its reason; exits 1 when there is any.
    """
    verdicts = check_store(load_store(directory) if directory else default_store())
    if as_json:
        emit_json(
            [
                {
                    "event_type": v.event_type,
                    "mode": v.mode,
                    "versions": v.versions,
                    "problems": [str(p) for p in v.problems],
                }
                for v in verdicts
            ]
        )
    else:
        for v in verdicts:
            state = "[red]INCOMPATIBLE[/]" if v.problems else "[green]ok[/]"
            out.print(f"{v.event_type:28} {v.mode:20} v1..v{v.versions:<3} {state}")
            for p in v.problems:
                out.print(f"    {p}")
    if any(v.problems for v in verdicts):
        sys.exit(1)


@schemas.command("docs")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("docs/events.md"),
    show_default=True,
    help="Where to write the Markdown ('-' for stdout).",
)
@pass_ctx
def docs_cmd(ctx: Context, output: Path) -> None:
    """Write the event reference (topics, keys, fields, examples) from the schemas."""
    text = render(default_store(), load_catalog(ctx.settings.topic_catalog))
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    output.write_text(text)
    out.print(f"wrote {output}")
