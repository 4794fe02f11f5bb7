"""YADTQ's client layer: the public API, and the definitions every role shares.

The public API is ``Client`` (submit, status, result, wait) and the error tree in
``client.errors``. ``client.config`` (yadtq.yaml), ``client.protocol`` (wire
format) and ``client.store`` (Redis layout) are defined here once and imported
by ``worker_pool`` and ``supervisor``.
"""

from client.api import Client, TaskHandle, TaskSpec
from client.config import Config, load_config
from client.errors import (
    ConfigError,
    InvalidMessage,
    ResultTimeout,
    ServiceUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    YadtqError,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Config",
    "ConfigError",
    "InvalidMessage",
    "ResultTimeout",
    "ServiceUnavailable",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskSpec",
    "YadtqError",
    "__version__",
    "load_config",
]
