"""Polling schedules on a virtual clock (pure; no sleeps)."""

from __future__ import annotations

import itertools

import pytest

from ops_widgets import _schedule


def take(it, n):  # type: ignore[no-untyped-def]
    return list(itertools.islice(it, n))


def test_fixed() -> None:
    assert take(_schedule.fixed(10), 3) == [10.0, 10.0, 10.0]
    with pytest.raises(ValueError):
        _schedule.fixed(-1)


def test_backoff_without_jitter_doubles_to_the_cap() -> None:
    assert take(_schedule.backoff(1, 60, 2, jitter=False), 8) == [1, 2, 4, 8, 16, 32, 60, 60]


def test_backoff_full_jitter_scales_each_cap() -> None:
    draws = iter([0.5, 0.0, 0.999, 0.25])
    got = take(_schedule.backoff(1, 3, 2, rand=lambda: next(draws)), 4)
    assert got == pytest.approx([0.5, 0.0, 2.997, 0.75])


def test_backoff_rejects_shrinking() -> None:
    with pytest.raises(ValueError):
        next(_schedule.backoff(1, 2, 0.5))


def test_clip_to_deadline() -> None:
    assert _schedule.clip_to_deadline(10, now=0, deadline=None) == 10
    assert _schedule.clip_to_deadline(10, now=0, deadline=25) == 10
    assert _schedule.clip_to_deadline(10, now=20, deadline=25) == 5  # never past it
    assert _schedule.clip_to_deadline(10, now=25, deadline=25) is None


def test_every_kind_has_typical_durations_and_no_other() -> None:
    # One list of kinds (ops_widgets._types.KINDS); the schedule's priors are keyed by it exactly.
    from ops_widgets._schedule import PRIORS
    from ops_widgets._types import KINDS, kind_of

    assert set(PRIORS) == set(KINDS)
    for name in ("batches/b", "tunedModels/t/operations/o", "fileSearchStores/s/operations/o",
                 "models/veo-3.0-generate-001/operations/v", "operations/x"):
        assert kind_of(name, {}) in KINDS
