"""`supplybus serve webhook`: the signed webhook receiver on uvicorn."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import click
import uvicorn

from supplybus.errors import ConfigError
from supplybus.metrics import Metrics
from supplybus.ops.cli.root import Context, cli, pass_ctx
from supplybus.ops.logs import configure_json_logging
from supplybus.producers.webhook.app import create_app
from supplybus.producers.webhook.intake import check_ready
from supplybus.producers.webhook.metrics import WebhookMetrics


@cli.group()
def serve() -> None:
    """Long-running HTTP services (Ctrl-C or SIGTERM stops them after the requests in hand)."""


@serve.command()
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Port to listen on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; put TLS in front of it).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@pass_ctx
def webhook(ctx: Context, port: int, host: str, metrics_port: int | None) -> None:
    """Receive signed JSON events: POST /v1/events/<EventType>.

    The body is one event payload, as a line of `supplybus publish --file`; the headers
    X-Supplybus-Delivery (the sender's delivery id), X-Supplybus-Timestamp (Unix seconds) and
    X-Supplybus-Signature (v1=hex HMAC-SHA256 of "<timestamp>.<body>" under one of
    SUPPLYBUS_WEBHOOK_SECRETS). 202 only once the event is in the outbox (`supplybus run relay`
    publishes it); a delivery id seen before answers 200 with the original event id. Other
    answers (401, 413, 422, 429, 503...) and an example sender: docs/webhook.md.
    """
    settings = ctx.settings
    if not settings.webhook_secret_list:
        raise ConfigError(
            "SUPPLYBUS_WEBHOOK_SECRETS: required by `serve webhook` (one secret, or two "
            "comma-separated while rotating)"
        )
    settings = ctx.running(kafka=False, database=True)  # the relay needs the broker, not this
    check_ready(settings)
    listener = _listen(host, port)
    configure_json_logging(settings.log_level)
    metrics = Metrics()
    if metrics_port:
        metrics.serve(metrics_port)
    app = create_app(settings, WebhookMetrics(metrics.registry))
    config = uvicorn.Config(
        app,
        log_config=None,  # our JSON lines; uvicorn's access log would print paths and addresses
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    click.echo(
        f"webhook receiver on http://{host}:{port}/v1/events/<EventType> "
        f"({len(settings.webhook_secret_list)} secret(s)); Ctrl-C stops it",
        err=True,
    )
    _Server(config).run(sockets=[listener])


class _Server(uvicorn.Server):
    """uvicorn, except that SIGTERM/SIGINT end a graceful shutdown with exit code 0 (uvicorn
    raises the signal again once it is done, so the process would die of it)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket: a taken port is one line, not a uvicorn traceback."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen ({exc.strerror or exc})"
        ) from None
    return sock
