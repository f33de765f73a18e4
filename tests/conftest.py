from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must never leak into (or change) a test.
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


@pytest.fixture(scope="session")
def _session_emu():  # type: ignore[no-untyped-def]
    from ops_widgets.emulator import Emulator

    with Emulator.start(random_seed=7) as e:
        yield e


@pytest.fixture()
def emu(_session_emu):  # type: ignore[no-untyped-def]
    """One emulator over real loopback HTTP for the session; tests make their own operations.
    Faults a test injected and did not use up are cleared after it."""
    yield _session_emu
    _session_emu.clear_faults()


@pytest.fixture()
def fresh_emu():  # type: ignore[no-untyped-def]
    """An empty emulator of the test's own, for tests that count or list everything."""
    from ops_widgets.emulator import Emulator

    with Emulator.start(random_seed=11) as e:
        yield e


@pytest.fixture(autouse=True)
def _seeded_jitter() -> None:
    # Backoff and limiter jitter draw from the random module: seeded, a test runs the same way
    # every time (on a virtual clock, its whole request log is then reproducible).
    import random

    random.seed(1234)
