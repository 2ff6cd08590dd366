"""The named retry policies of the framework's I/O (pure, no broker, no sleeping)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tenacity import retry_if_exception_type

from framework.resilience import retrying
from framework.resilience.retrying import Backoff


def test_delay_doubles_from_first_up_to_cap() -> None:
    """Without jitter the delay after failure n is first * 2**(n-1), never above cap."""
    policy = Backoff(first=0.5, cap=3.0, jitter=(1.0, 1.0))
    assert [policy.delay(n, 0.7) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("rand", [0.0, 0.25, 1.0])
def test_jitter_scales_the_nominal_delay_within_its_band(rand: float) -> None:
    """The draw picks a factor between the band's low and high ends."""
    policy = Backoff(first=1.0, cap=8.0, jitter=(0.5, 1.5))
    assert policy.delay(3, rand) == pytest.approx(4.0 * (0.5 + rand))


def test_full_jitter_can_retry_at_once() -> None:
    """The default band (0, 1) is tenacity's full jitter: a draw of 0 waits nothing."""
    assert Backoff(first=0.2, cap=3.0).delay(4, 0.0) == 0.0
    assert Backoff(first=0.2, cap=3.0).delay(4, 1.0) == pytest.approx(1.6)


def test_huge_failure_counts_stay_at_the_cap() -> None:
    """A failure count far past the cap does not overflow."""
    assert retrying.RECONNECT.delay(10_000, 1.0) == retrying.RECONNECT.cap


@pytest.mark.parametrize(
    ("first", "cap", "jitter", "attempts"),
    [
        (0.0, 1.0, (0.0, 1.0), None),
        (2.0, 1.0, (0.0, 1.0), None),
        (1.0, 2.0, (1.0, 0.5), None),
        (1.0, 2.0, (0.0, 1.0), 0),
    ],
)
def test_nonsense_policies_are_refused(
    first: float, cap: float, jitter: tuple[float, float], attempts: int | None
) -> None:
    """A zero first delay, a cap below it, an inverted band or no attempts is a ValueError."""
    with pytest.raises(ValueError, match=r"first|jitter|attempts"):
        Backoff(first=first, cap=cap, jitter=jitter, attempts=attempts)


def test_the_named_policies_keep_their_schedules() -> None:
    """Each named policy's first and capped nominal delays are the ones documented."""
    schedules = {
        name: (policy.nominal(1), policy.nominal(99))
        for name, policy in vars(retrying).items()
        if isinstance(policy, Backoff)
    }
    assert schedules == {
        "CONNECT": (0.2, 3.0),
        "PUBLISH": (0.05, 2.0),
        "SETTLE_MOVE": (0.5, 5.0),
        "OVERLOAD": (0.05, 2.0),
        "RESUBSCRIBE": (0.2, 5.0),
        "RECONNECT": (0.5, 15.0),
        "OUTBOX_ROW": (0.5, 30.0),
    }


def test_outbox_sweep_pause_grows_from_twice_the_poll_interval_to_five_seconds() -> None:
    """The relay waits 2, 4, 8, 16 poll intervals after failed sweeps, at most 5 s."""
    assert [retrying.outbox_sweep(0.1).nominal(n) for n in range(1, 7)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 1.6, 1.6]
    )
    assert [retrying.outbox_sweep(1.0).nominal(n) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]
    assert retrying.outbox_sweep(10.0).nominal(1) == 5.0


class Recorder:
    """Runs a tenacity loop whose body always fails, recording the sleeps between tries."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.tries = 0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def run(self, policy: Backoff, error: Exception) -> None:
        async for attempt in policy.retrying(
            retry_if_exception_type(ConnectionError), rand=lambda: 0.5, sleep=self.sleep
        ):
            with attempt:
                self.tries += 1
                raise type(error)(f"{error} {self.tries}")


async def test_retrying_waits_by_the_policy_and_gives_up_after_its_attempts() -> None:
    """The tenacity loop sleeps the policy's delays and re-raises the last error."""
    recorder = Recorder()
    policy = Backoff(first=0.1, cap=1.0, jitter=(1.0, 1.0), attempts=4)
    with pytest.raises(ConnectionError, match="try 4"):
        await recorder.run(policy, ConnectionError("try"))
    assert recorder.tries == 4
    assert recorder.slept == pytest.approx([0.1, 0.2, 0.4])


async def test_retrying_does_not_retry_other_errors() -> None:
    """An error the retry condition does not accept ends the loop at once."""
    recorder = Recorder()
    with pytest.raises(KeyError):
        await recorder.run(retrying.CONNECT, KeyError("no"))
    assert (recorder.tries, recorder.slept) == (1, [])


def test_a_policy_without_limits_never_stops() -> None:
    """No attempts and no `within`: the stop condition is tenacity's stop_never."""
    from tenacity import stop_never

    assert retrying.RESUBSCRIBE.stop() is stop_never
    assert replace(retrying.PUBLISH, within=1.0).stop() is not stop_never


async def test_retry_on_overload_pauses_by_its_policy_until_there_is_room() -> None:
    """RetryOnOverload retries Overloaded with the OVERLOAD schedule (injected sleep)."""
    from framework import Overloaded, RetryOnOverload

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    refusals = 2

    async def send() -> str:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise Overloaded("full")
        return "key"

    assert await RetryOnOverload(within=60.0, sleep=sleep).call(send) == "key"
    assert len(slept) == 2
    assert all(0 <= s <= retrying.OVERLOAD.nominal(n) for n, s in enumerate(slept, 1))
