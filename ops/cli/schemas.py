"""`supplybus schemas list | check | lock | docs`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from supplybus.events import schema_lock
from supplybus.events.docs import render
from supplybus.events.governance import Verdict, check_store
from supplybus.events.schema_store import SchemaStore, default_store, load_store
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


_DIR = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Use the schemas in this folder (and its schemas.lock) instead of the shipped ones.",
)


def _store(directory: Path | None) -> SchemaStore:
    return load_store(directory) if directory else default_store()


@schemas.command("check")
@_DIR
@json_option
def check_cmd(directory: Path | None, as_json: bool) -> None:
    """Check each schema's newest version against its earlier ones, and the released files.

    Modes (BACKWARD by default, per event type in schemas/compatibility.yaml): BACKWARD,
    FORWARD, FULL, NONE and their _TRANSITIVE variants, by the Avro specification's
    resolution rules, plus two deliberately stricter rules for logical types:

    \b
    - a decimal keeps its precision and scale (Apache avro, and so Confluent
      Schema Registry, accept a changed scale: amounts off by a power of ten);
    - no other logical-type change either: timestamp-millis to -micros, date
      (int) to long, decimal to bytes, ... are refused, because the same
      encoded value would mean something else to the reader; add a new field
      instead (docs/adr/0006).

    Whatever the mode, also refused: a released version (one in schemas/schemas.lock)
    edited in place or deleted, and two versions sharing a fingerprint that decode
    differently (single-object framing cannot tell them apart). A version that only changes
    docs, aliases or defaults, or reverts to an earlier one, is a version like any other.
    Prints each problem with its reason; exits 1 when there is any.
    """
    store = _store(directory)
    verdicts = check_store(store)
    if as_json:
        emit_json([_as_dict(v) for v in verdicts])
    else:
        _print_verdicts(verdicts, schema_lock.lock_path(store))
    if not all(v.ok for v in verdicts):
        sys.exit(1)


def _as_dict(v: Verdict) -> dict[str, object]:
    return {
        "event_type": v.event_type,
        "mode": v.mode,
        "versions": v.versions,
        "problems": [str(p) for p in v.problems],
        "refusals": list(v.refusals),
        "unreleased": list(v.unreleased),
    }


def _print_verdicts(verdicts: list[Verdict], lock: Path) -> None:
    for v in verdicts:
        state = "[red]INCOMPATIBLE[/]" if v.problems else "[red]REFUSED[/]" if v.refusals else ""
        state = state or "[green]ok[/]"
        span = f"v1..v{v.versions}" if v.versions else "no files"
        out.print(f"{v.event_type:28} {v.mode:20} {span:8} {state}")
        for line in [*map(str, v.problems), *v.refusals]:
            out.print(f"    {line}", markup=False, soft_wrap=True)  # one line, as written
    if not lock.exists():
        out.print(
            f"no {lock}: no version is released yet (`supplybus schemas lock`)", soft_wrap=True
        )
        return
    pending = [f"{v.event_type} v{n}" for v in verdicts for n in v.unreleased]
    if pending:
        out.print(
            f"not yet in {lock.name} (`supplybus schemas lock`): {', '.join(pending)}",
            soft_wrap=True,
        )


@schemas.command("lock")
@_DIR
def lock_cmd(directory: Path | None) -> None:
    """Release the new versions: add them to schemas/schemas.lock.

    Runs `supplybus schemas check` first and locks nothing if it fails. Existing lines are
    never rewritten: a released version stays as it is; change it with a new version.
    """
    store = _store(directory)
    verdicts = check_store(store)
    if not all(v.ok for v in verdicts):
        _print_verdicts([v for v in verdicts if not v.ok], schema_lock.lock_path(store))
        out.print("nothing locked: fix the problems above first")
        sys.exit(1)
    path = schema_lock.lock_path(store)
    new = schema_lock.unreleased(store, path)
    if not new:
        out.print(f"nothing to lock: every version is in {path}")
        return
    schema_lock.append(path, new)
    for sv in new:
        out.print(f"locked {sv.event_type} v{sv.version} {sv.content_hash}")


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
