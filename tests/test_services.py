"""`supplybus up | down | status` against real embedded services, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supplybus.config import Settings
from supplybus.consumers.processors import BUILTIN
from supplybus.events.topics import load_catalog
from supplybus.ops import embedded, services
from supplybus.ops.topic_admin import inspect
from tests.helpers import run_cli, wait_for


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "sbhome"
    yield home
    run_cli("down", env=_env(home))  # never leave a process behind, even on failure


def _env(home: Path) -> dict[str, str]:
    return {"SUPPLYBUS_HOME": str(home), "SUPPLYBUS_BROKER_PORT": "0"}


def _pids(home: Path) -> list[int]:
    state = json.loads((home / "state.json").read_text())
    pids = [int(state["broker"]["pid"])]
    pg = embedded.postgres_pid(home)
    assert pg is not None
    return [*pids, pg]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_up_twice_status_and_down_leave_nothing_behind(home: Path) -> None:
    first = run_cli("up", env=_env(home))
    assert first.returncode == 0, first.stderr
    assert "started  broker" in first.stdout and "started  postgres" in first.stdout
    second = run_cli("up", env=_env(home))
    assert second.returncode == 0, second.stderr
    assert "already up" in second.stdout and "started" not in second.stdout

    status = run_cli("status", "--json", env=_env(home))
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["broker"]["healthy"] and report["database"]["healthy"]
    assert report["broker"]["mode"] == report["database"]["mode"] == "embedded"

    pids = _pids(home)
    assert all(_alive(p) for p in pids)
    down = run_cli("down", env=_env(home))
    assert down.returncode == 0, down.stderr
    assert "broker" in down.stdout and "postgres" in down.stdout
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=10, what="processes to exit")
    after = run_cli("status", "--json", env=_env(home))
    assert after.returncode == 1
    assert not json.loads(after.stdout)["broker"]["healthy"]


def test_broker_restart_then_up_restores_every_catalog_topic(home: Path) -> None:
    assert run_cli("up", env=_env(home)).returncode == 0
    state = json.loads((home / "state.json").read_text())
    os.kill(int(state["broker"]["pid"]), signal.SIGKILL)  # memory-only: every topic is gone
    wait_for(
        lambda: not embedded.is_broker_process(int(state["broker"]["pid"])),
        timeout=10,
        what="the broker to die",
    )
    again = run_cli("up", env=_env(home))
    assert again.returncode == 0, again.stderr
    assert "started  broker" in again.stdout
    settings = services.resolve(Settings(home=home))
    states = inspect(settings, load_catalog(settings.topic_catalog))
    assert states and all(s.status == "ok" for s in states), [
        (s.spec.name, s.status) for s in states if s.status != "ok"
    ]


def test_stale_pid_file_is_handled(home: Path) -> None:
    home.mkdir(parents=True)
    # a pid that is certainly not a broker: our own
    (home / "state.json").write_text(json.dumps({"broker": {"pid": os.getpid(), "port": 1}}))
    result = run_cli("up", env=_env(home))
    assert result.returncode == 0, result.stderr
    assert "started  broker" in result.stdout


def test_taken_explicit_port_is_a_clear_error(home: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = _env(home) | {"SUPPLYBUS_BROKER_PORT": str(port)}
        result = run_cli("up", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: SUPPLYBUS_BROKER_PORT: port {port} on 127.0.0.1 is taken; "
        "choose a free port or unset it to let supplybus pick one"
    ]


def test_unreachable_broker_is_one_line_within_15s(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "topics",
        "list",
        env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SUPPLYBUS_HOME": str(tmp_path)},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15


def test_bad_database_url_is_one_line_within_15s(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "db",
        "migrate",
        env={"DATABASE_URL": "postgresql://sb:pw@127.0.0.1:1/sb", "SUPPLYBUS_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "pw" not in lines[0], result.stderr
    assert time.monotonic() - started < 15


def test_unknown_processor_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "no-such-processor",
        env={"SUPPLYBUS_HOME": str(tmp_path / "h"), "SUPPLYBUS_BROKER_PORT": "0"},
    )
    run_cli("down", env={"SUPPLYBUS_HOME": str(tmp_path / "h")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown processor 'no-such-processor'; expected one of "
        f"{', '.join(sorted(BUILTIN))}, 'relay', 'all', or module:attribute"
    ]
