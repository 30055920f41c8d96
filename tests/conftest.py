"""Session services for the tests: the real broker and the real database.

By default an embedded Tansu broker and an embedded PostgreSQL are started once per test
session in a temporary SUPPLYBUS_HOME and stopped at the end, even on failure.
``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` point the suite at running services instead;
``SUPPLYBUS_TEST_KAFKA=testcontainers`` starts Apache Kafka (cp-kafka) with Docker.
Tests are isolated by unique topic names and a PostgreSQL schema of their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from supplybus.adapters.kafka import make_admin
from supplybus.config import Settings
from supplybus.ops import embedded, migrate, topic_admin

pytest_plugins = ["tests.workers"]  # the `workers` fixture (processes running `supplybus run`)


def pytest_configure(config: pytest.Config) -> None:
    """A temporary root of this session's own, unless --basetemp names one.

    pytest's shared root (/tmp/pytest-of-<user>) is made private again by every pytest session
    that starts; the embedded PostgreSQL runs as another user, so a second session started
    meanwhile (a developer's, beside CI's) would cut the first one's database off its files.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="supplybus-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """A CLI run in process configures logging on the test's captured stderr: remove what it
    added, or later tests would log to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def services_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("supplybus-home")


@pytest.fixture(scope="session")
def kafka_bootstrap(services_home: Path) -> Iterator[str]:
    if os.environ.get("SUPPLYBUS_TEST_KAFKA") == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0") as kafka:
            yield kafka.get_bootstrap_server()
        return
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    broker = embedded.start_broker(services_home, embedded.free_port())
    try:
        yield broker.bootstrap
    finally:
        embedded.stop_process(broker.pid)


@pytest.fixture(scope="session")
def database_url(services_home: Path) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    uri = embedded.start_postgres(services_home)
    try:
        yield uri
    finally:
        embedded.stop_postgres(services_home)


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Settings:
    """Settings on the session services, with a PostgreSQL schema of this test's own."""
    return Settings(
        home=tmp_path / "home",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        db_schema=f"t_{uuid.uuid4().hex[:12]}",
        connect_timeout_s=10.0,
    )


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """``settings`` with every migration applied to the test's schema."""
    migrate.migrate(settings)
    return settings


TopicFactory = Callable[..., str]


@pytest.fixture
def make_topic(settings: Settings) -> TopicFactory:
    """Create a uniquely named topic on the broker and return its name."""

    def create(prefix: str = "test", partitions: int = 3, **configs: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}.v1"
        futures = make_admin(settings).create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs)]
        )
        for future in futures.values():
            future.result(timeout=15)
        return name

    return create


@pytest.fixture
def isolated(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose topic catalog is the shipped one with every topic renamed uniquely
    (prefix ``t<hex>.``) and created on the broker; the database schema is migrated."""
    private = topic_admin.apply_private(settings, tmp_path, f"t{uuid.uuid4().hex[:8]}.")
    migrate.migrate(private)
    return private
