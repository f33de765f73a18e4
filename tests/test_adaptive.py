"""The adaptive schedule on a virtual clock: pure, no sockets, no sleeps."""

from __future__ import annotations

import math

import pytest

from ops_widgets._schedule import PRIORS, Adaptive, Durations


def run_video(a: Adaptive, finish: float, horizon: float = 10_000) -> tuple[int, float]:
    """Poll an operation with no progress that finishes at ``finish``: (polls, detection delay)."""
    t, polls = 0.0, 0
    while t < horizon:
        polls += 1
        if t >= finish:
            return polls, t - finish
        a.observe(t, None)
        t += a.next_delay()
    raise AssertionError("never saw it done")


def run_progress(a: Adaptive, start: float, finish: float) -> tuple[int, float, list[float]]:
    """Progress 0 until ``start``, then linear to 100 at ``finish``."""
    t, polls, times = 0.0, 0, []
    while True:
        polls += 1
        times.append(t)
        if t >= finish:
            return polls, t - finish, times
        p = 0.0 if t <= start else 100 * (t - start) / (finish - start)
        a.observe(t, p)
        t += a.next_delay()


def run_steps(a: Adaptive, finish: float, steps: int, drift: float, told: bool = True) -> tuple[int, float]:
    """Progress in ``steps`` whole steps, at a rate that goes from (1 - drift) to (1 + drift) of
    the mean over the run (a job that speeds up or slows down): (polls, detection delay). ``told``:
    the schedule knows the step (as a tuning job's totalSteps tells it)."""
    t, polls = 0.0, 0
    while True:
        polls += 1
        if t >= finish:
            return polls, t - finish
        x = t / finish
        a.observe(t, math.floor(((1 - drift) * x + drift * x * x) * steps) * 100 / steps, 100 / steps if told else 0.0)
        t += a.next_delay()


def test_no_progress_polls_sparsely_early_and_densely_near_the_likely_finish() -> None:
    a = Adaptive("video", Durations())
    a.observe(0, None)
    first = a.next_delay()
    lo, hi = PRIORS["video"]
    assert first > 0.6 * lo  # nothing to see in the first minute of a Veo job
    a.observe(150, None)
    middle = a.next_delay()
    assert middle < first / 2  # dense where finishes are likely
    assert a.estimate().from_priors and a.estimate().eta is not None


def test_no_progress_detects_about_as_fast_as_a_fixed_10s_loop_with_fewer_polls() -> None:
    total_polls = total_delay = 0.0
    finishes = [60 + 300 * i / 49 for i in range(50)]  # 1 to 6 minutes
    for f in finishes:
        polls, delay = run_video(Adaptive("video", Durations()), f)
        total_polls += polls
        total_delay += delay
    fixed10_polls = sum(int(f // 10) + 2 for f in finishes)
    assert total_polls < fixed10_polls
    assert total_delay / len(finishes) < 10


def test_overrun_backs_off_in_proportion_and_admits_no_eta() -> None:
    a = Adaptive("import", Durations())
    a.observe(5000, None)  # far past every import we know of
    assert a.estimate().eta is None
    assert a.next_delay() == pytest.approx(0.25 * 5000)
    assert Adaptive("import", Durations(), ceiling=600).next_delay() <= 600


def test_floor_and_ceiling() -> None:
    a = Adaptive("tuning", Durations(), floor=2, ceiling=100)
    for t in (10, 20, 30):
        a.observe(t, t / 10)  # steady: it aims at the finish, ~970 s away...
    assert a.next_delay() == 100  # ...but never further than the ceiling
    b = Adaptive("tuning", Durations(), floor=2, ceiling=100)
    b.observe(10, 99.99)
    assert b.next_delay() == 2


def test_progress_converges_near_the_finish_in_few_polls() -> None:
    for finish in (600.0, 2400.0, 10_800.0):
        polls, delay, times = run_progress(Adaptive("tuning", Durations(), ceiling=10**6), finish * 0.03, finish)
        assert polls <= 9, (finish, times)  # vs 60-1080 for a fixed 10 s loop
        assert delay <= 0.03 * finish + 2, (finish, times)


@pytest.mark.parametrize("finish", [2400.0, 10_800.0])
@pytest.mark.parametrize("drift", [0.1, -0.1])
def test_a_job_whose_rate_bends_is_seen_done_soon_not_where_an_early_slope_pointed(
        finish: float, drift: float) -> None:
    # A slope read far from the finish misses it by minutes when the rate changes by 10 %: the
    # schedule closes in on the finish in steps, each re-reading the rate, instead of betting on it.
    polls, delay = run_steps(Adaptive("tuning", Durations(), ceiling=10**6), finish, 400, drift)
    assert delay <= 30, (polls, delay)
    assert polls <= 15  # vs 240-1080 for a fixed 10 s loop


def test_polls_that_only_reread_a_far_finish_can_wait_and_those_near_it_cannot() -> None:
    a = Adaptive("tuning", Durations(), ceiling=10**6)
    a.observe(100, 1.0)
    a.observe(200, 3.0)  # the rate doubled: a finish ~4,850 s away, not yet trusted
    delay, slack = a.next_poll()
    assert delay == pytest.approx(200) and slack == pytest.approx(100)  # re-reading the rate: it may wait
    a.observe(400, 7.0)  # the same finish again (5,050 s): trusted, closing in on it
    delay, slack = a.next_poll()
    assert delay == pytest.approx(0.8 * 4650) and 0 < slack < 4650 - delay
    a.observe(5040, 99.8)
    assert a.next_poll() == (pytest.approx(10.5), 0.0)  # nearly there: it must go out on time
    b = Adaptive("video", Durations())
    b.observe(120, None)
    assert b.next_poll()[1] == 0.0  # no progress: every poll may be the one that sees it done


def test_progress_eta_is_reported_not_estimated() -> None:
    a = Adaptive("tuning", Durations())
    a.observe(100, 10.0)
    a.observe(200, 20.0)
    est = a.estimate()
    assert not est.from_priors and est.eta == pytest.approx(800)


def test_progress_going_back_restarts_the_estimate() -> None:
    a = Adaptive("import", Durations())
    a.observe(10, 50.0)
    a.observe(20, 80.0)
    a.observe(30, 5.0)  # a retry from scratch
    assert a.estimate().eta == pytest.approx(95 / (5 / 30))


def test_priors_refine_with_observed_durations() -> None:
    d = Durations()
    before = Adaptive("video", d)
    before.observe(0, None)
    eta_before, first_before = before.estimate().eta, before.next_delay()
    for _ in range(200):
        d.observe("video", 100.0)
    after = Adaptive("video", d)
    after.observe(0, None)
    assert after.estimate().eta == pytest.approx(100, rel=0.1)
    assert abs(eta_before - 100) > 20  # the prior alone said otherwise
    assert after.next_delay() != pytest.approx(first_before)
    # and the learnt distribution finds 100 s jobs with fewer polls and a small delay
    polls_after, delay_after = run_video(Adaptive("video", d), 100.0)
    polls_before, _ = run_video(Adaptive("video", Durations()), 100.0)
    assert polls_after <= polls_before and delay_after < 10


def test_durations_cdf_is_monotone_and_quantile_inverts_it() -> None:
    d = Durations()
    xs = [0, 10, 40, 60, 100, 200, 399, 400, 450, 600]
    cdf = [d.cdf("video", x) for x in xs]
    assert cdf == sorted(cdf) and cdf[0] == 0 and cdf[-1] == 1
    for q in (0.1, 0.5, 0.9):
        assert d.cdf("video", d.quantile("video", q)) == pytest.approx(q, abs=1e-6)


def test_unknown_kind_uses_the_other_prior() -> None:
    assert Durations().sample("mystery") == Durations().sample("other")


@pytest.mark.parametrize(("metadata", "step"), [
    ({"completedSteps": 7, "totalSteps": 20, "completedPercent": 35}, 5.0),
    ({"totalSteps": "400"}, 0.25),  # int64 as a string
    ({"batchStats": {"requestCount": "1000", "successfulRequestCount": "10"}}, 0.1),
    ({"batchStats": {"requestCount": "1"}}, 100.0),
    ({"completionStats": {"successfulCount": "3", "failedCount": "1", "incompleteCount": "6"}}, 10.0),  # Vertex
    ({"completionStats": {"successfulCount": "3", "incompleteCount": "-1"}}, 0.0),  # the total is not known
    ({"completedPercent": 35}, 0.0),  # a percent alone: read as it is
    ({}, 0.0),
    ({"totalSteps": 0}, 0.0), ({"totalSteps": 0.5}, 0.0), ({"totalSteps": True}, 0.0), ({"totalSteps": "x"}, 0.0),
    ({"totalSteps": 10**400}, 0.0), ({"batchStats": ["requestCount"]}, 0.0),
])
def test_progress_step_is_what_the_metadata_counts_in_wholes(metadata: dict[str, object], step: float) -> None:
    from ops_widgets._progress import progress_step

    assert progress_step(metadata) == pytest.approx(step)


@pytest.mark.parametrize("steps", [20, 50])
def test_told_the_step_a_job_of_few_steps_is_seen_done_within_a_fraction_of_one(steps: int) -> None:
    # Taken as exact, "7 of 20 steps" puts the finish at the late end of a window a step wide:
    # polls land up to a step late (9 minutes, for 3 hours in 20 steps).
    finishes = [600 + 10_200 * i / 39 for i in range(40)]
    told = [run_steps(Adaptive("tuning", Durations()), f, steps, 0.0, told=True) for f in finishes]
    exact = [run_steps(Adaptive("tuning", Durations()), f, steps, 0.0, told=False) for f in finishes]
    assert max(delay for _, delay in told) <= 0.3 * 10_800 / steps  # under a third of the longest step
    assert max(delay for _, delay in exact) > 0.5 * 10_800 / steps  # what it was
    assert sum(polls for polls, _ in told) <= 1.5 * sum(polls for polls, _ in exact)
