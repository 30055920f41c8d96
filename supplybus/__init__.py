"""supplybus: an event-driven integration backbone for hospital supply chains."""

from supplybus.config import Settings
from supplybus.errors import (
    ConfigError,
    PermanentError,
    SupplybusError,
    TransientError,
    ValidationError,
)

__all__ = [
    "ConfigError",
    "PermanentError",
    "Settings",
    "SupplybusError",
    "TransientError",
    "ValidationError",
]
