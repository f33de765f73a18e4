"""ops_widgets: Google long-running operations from Python and Jupyter."""

from ._client import AsyncOperations
from ._clock import Clock, VirtualClock
from ._engine import AsyncTracked, Tracked
from ._exceptions import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BrokenAnswerError,
    InvalidNameError,
    MalformedOperationError,
    NotFoundError,
    OpsError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TooLargeError,
    TransportError,
    UnsupportedError,
    WaitTimeout,
)
from ._frame import to_dataframe
from ._sync import Operations
from ._types import ListOperationsResponse, Operation, OperationError, State

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The widgets import anywidget and ipywidgets: load them only when asked for.
    if name in ("OperationWidget", "OperationsTable", "watch_all"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'ops_widgets' has no attribute {name!r}")


__all__ = [
    "ApiError",
    "AsyncOperations",
    "AsyncTracked",
    "AuthenticationError",
    "BadRequestError",
    "BrokenAnswerError",
    "Clock",
    "InvalidNameError",
    "ListOperationsResponse",
    "MalformedOperationError",
    "NotFoundError",
    "Operation",
    "OperationError",
    "OperationWidget",
    "Operations",
    "OperationsTable",
    "OpsError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "State",
    "TooLargeError",
    "Tracked",
    "TransportError",
    "UnsupportedError",
    "VirtualClock",
    "WaitTimeout",
    "to_dataframe",
    "watch_all",
]

# Public classes say they live here, not in private modules (as httpx does).
for _name in __all__:
    _obj = globals().get(_name)
    if getattr(_obj, "__module__", "").startswith("ops_widgets._"):
        _obj.__module__ = "ops_widgets"
del _name, _obj
