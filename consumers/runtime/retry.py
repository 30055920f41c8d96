"""Retrying a batch while its failure is transient: partitions paused, the batch kept, order
kept (no retry topic), exponential backoff with jitter, until it applies or the lane stops."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_when_event_set,
    wait_exponential_jitter,
)

from supplybus.consumers.runtime.faults import is_transient

T = TypeVar("T")


def retry_paused(
    consumer: Consumer,
    stop: threading.Event,
    attempt: Callable[[], T],
    on_transient: Callable[[BaseException | None], None],
) -> T | None:
    """``attempt()`` again until it succeeds; None when ``stop`` was set first. A failure that
    is not transient is raised at once."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # a stop ends the wait at once

    paused = consumer.assignment()
    consumer.pause(paused)
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
        stop=stop_when_event_set(stop),
        before_sleep=lambda state: on_transient(
            state.outcome.exception() if state.outcome else None
        ),
        sleep=sleep,
    )
    try:
        return retrying(attempt)
    except RetryError:
        return None
    finally:
        consumer.resume(paused)
