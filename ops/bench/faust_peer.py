"""The Faust peer of the pipeline bench: one faust-streaming worker, run as a subprocess.

``python -m supplybus.ops.bench.faust_peer --bootstrap HOST:PORT --topic T --count N
--mode event|take --group G --datadir DIR`` reads the topic from the beginning with an agent,
decodes every value with the supplybus codec and sums signed quantities per (location, item,
lot) in memory (the stock-balances logic without the database). When N events are in, it
prints ``MARK`` + JSON ``{"events", "seconds", "join_seconds", "balances"}`` and exits at
once (no LeaveGroup: on Tansu a leave during a rebalance can wedge a group).

The bench's topics exist already (Tansu does not auto-create) and the worker declares none:
values are raw bytes, no tables, no web server, no leader topic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supplybus.consumers.inventory.balances import signed_quantity
from supplybus.errors import SupplybusError
from supplybus.events.framing import make_codec
from supplybus.events.schema_store import default_store

if TYPE_CHECKING:
    import faust

TAKE = 1000
WITHIN = 0.25
MARK = "faust-peer-result:"
MODULE = "supplybus.ops.bench.faust_peer"


class PeerError(SupplybusError):
    """The Faust peer did not deliver a result (crashed, timed out, printed none)."""


def measure(
    bootstrap: str,
    topic: str,
    count: int,
    mode: str,
    group: str,
    datadir: Path,
    timeout_s: float = 75.0,
) -> tuple[float, float]:
    """Run the peer as a subprocess (killed on timeout): (events/s, seconds to first event)."""
    args = {"bootstrap": bootstrap, "topic": topic, "count": count, "mode": mode, "group": group}
    cmd = [sys.executable, "-m", MODULE, *(f"--{k}={v}" for k, v in args.items())]
    cmd.append(f"--datadir={datadir}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise PeerError(f"no result within {timeout_s:g}s (killed)") from None
    result = parse_result(out)
    if result is None:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise PeerError(f"exited {proc.returncode}: {tail}")
    return result["events"] / result["seconds"], result["join_seconds"]


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The result the peer printed (after ``MARK``, maybe behind terminal escapes), or None."""
    _, found, rest = stdout.rpartition(MARK)
    if not found:
        return None
    try:
        result = json.loads(rest.splitlines()[0])
    except (ValueError, IndexError):
        return None
    return result if isinstance(result, dict) else None


class Tally:
    """The processor logic: decode, sum signed quantities per (location, item, lot)."""

    def __init__(self, count: int, started: float) -> None:
        self.codec = make_codec(default_store())
        self.count = count
        self.started = started
        self.seen = 0
        self.first_at = 0.0
        self.totals: dict[tuple[str, str, str], Decimal] = {}

    def add(self, value: bytes) -> None:
        if not self.seen:
            self.first_at = time.perf_counter()
        r = self.codec.decode(value).record
        key = (r["location_id"], r["item_id"], r["lot_number"] or "")
        self.totals[key] = self.totals.get(key, Decimal(0)) + signed_quantity(r)
        self.seen += 1
        if self.seen >= self.count:
            self.finish()

    def finish(self) -> None:
        seconds = time.perf_counter() - self.first_at
        result = {
            "events": self.seen,
            "seconds": seconds,
            "join_seconds": self.first_at - self.started,
            "balances": len(self.totals),
        }
        sys.stdout.write(f"\n{MARK}{json.dumps(result)}\n")
        sys.stdout.flush()
        os._exit(0)  # done: skip Faust's shutdown (and its LeaveGroup)


def make_app(args: argparse.Namespace, tally: Tally) -> faust.App:
    import faust  # only in the subprocess: Faust wants its own loop and worker

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        datadir=str(Path(args.datadir) / "faust"),
        store="memory://",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")

    if args.mode == "event":

        @app.agent(topic)
        async def per_event(stream: faust.StreamT[bytes]) -> None:
            async for value in stream:
                tally.add(value)

    else:

        @app.agent(topic)
        async def batched(stream: faust.StreamT[bytes]) -> None:
            async for values in stream.take(TAKE, within=WITHIN):
                for value in values:
                    tally.add(value)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faust_peer")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--mode", choices=("event", "take"), required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--datadir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    tally = Tally(args.count, time.perf_counter())
    app = make_app(args, tally)
    import faust

    worker = faust.Worker(app, loglevel="ERROR", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 1  # the worker stopped before the count was reached


if __name__ == "__main__":
    sys.exit(main())
