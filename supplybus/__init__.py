"""supplybus: an event-driven integration backbone for hospital supply chains.

The root exports settings and the errors a caller catches; the publisher
(``supplybus.producers.publisher``) and the processor API
(``supplybus.consumers.runtime.processor``) live in their layers, which build on this one.
"""

from supplybus.config import Settings
from supplybus.errors import (
    BrokerUnavailable,
    ConfigError,
    DatabaseUnavailable,
    DeliveryError,
    FieldError,
    PermanentError,
    SupplybusError,
    TransientError,
    ValidationError,
)

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "DatabaseUnavailable",
    "DeliveryError",
    "FieldError",
    "PermanentError",
    "Settings",
    "SupplybusError",
    "TransientError",
    "ValidationError",
]
