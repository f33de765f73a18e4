"""The public surface: one flat, sorted __all__ (as httpx tests its own)."""

from __future__ import annotations

import ops_widgets
import ops_widgets.emulator

CONTRACT = {
    "Operations", "AsyncOperations", "Operation", "OperationError", "State", "ListOperationsResponse",
    "OpsError", "ApiError", "BadRequestError", "AuthenticationError", "PermissionDeniedError",
    "NotFoundError", "RateLimitError", "ServerError", "TransportError", "InvalidNameError",
    "MalformedOperationError", "WaitTimeout",
}


def test_all_is_sorted_and_complete() -> None:
    assert ops_widgets.__all__ == sorted(ops_widgets.__all__)
    assert CONTRACT <= set(ops_widgets.__all__)
    lazy = {"OperationWidget", "OperationsTable", "watch_all"}  # widgets load anywidget only when asked for
    for name in ops_widgets.__all__:
        obj = getattr(ops_widgets, name)
        assert name in lazy or obj.__module__ == "ops_widgets", name


def test_emulator_exports() -> None:
    assert {"Emulator", "EmulatorApp"} <= set(ops_widgets.emulator.__all__)
