from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Started as a background job of a script (`cmd &`), pytest inherits SIGINT ignored, and so
    # would every process it starts: the tests that stop a CLI with Ctrl-C would wait for it in
    # vain. Caught here, SIGINT is back to its default in every child (exec resets a handler,
    # never an ignore).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must never leak into (or change) a test.
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    # Nor a developer's Vertex AI setup (google-genai's variables, Application Default Credentials).
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
                 "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _session_history_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same before any test's own: servers and kernels that session fixtures start (the
    browser tests' JupyterLab) never write into the user's data folder either."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPS_WIDGETS_HOME", str(tmp_path_factory.mktemp("ops-widgets-session-home")))
        yield


@pytest.fixture(autouse=True)
def _history_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's operations history in a folder of its own, never the user's: set in the
    environment, so that subprocesses (the CLI, notebook kernels) inherit it."""
    home = tmp_path_factory.mktemp("ops-widgets-home")
    monkeypatch.setenv("OPS_WIDGETS_HOME", str(home))
    monkeypatch.delenv("OPS_WIDGETS_HISTORY", raising=False)
    return home


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
