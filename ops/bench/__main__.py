"""Run every benchmark section and print its table (`make bench`)."""

from __future__ import annotations

import sys

from rich.console import Console

from supplybus.ops.bench import codec, dlq, ingest, pipeline, publisher, requisitions, retention


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.rule("supplybus bench")
    for section in (
        codec.run,
        publisher.run,
        pipeline.run,
        retention.run,
        requisitions.run,
        dlq.run,
        ingest.run,
    ):
        section().print(console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
