"""The rate limiter's table: bounded, and a flood of new keys cannot wipe a live window's count."""

from __future__ import annotations

from rosetta.clock import ManualClock
from rosetta.handlers.base import address_key
from rosetta.ratelimit import MAX_KEYS, RateLimiter

HOUR_S = 3600


def test_a_flood_of_new_keys_keeps_an_hourly_count():
    """The table is full at MAX_KEYS. Making room used to forget every slot older than the NEW key's
    window: one minute, so every hourly limit (OTP and reset guesses per account) began again."""
    clock = ManualClock()
    limiter = RateLimiter(clock)
    for _ in range(5):
        assert limiter.hit("otp-verify", "victim@example.test", 5, HOUR_S).allowed
    assert not limiter.hit("otp-verify", "victim@example.test", 5, HOUR_S).allowed
    clock.advance(minutes=2)
    for n in range(MAX_KEYS + 10):  # one preview each from as many addresses
        limiter.hit("invite-preview", f"198.51.{n // 256}.{n % 256}/{n}", 30, 60)
    assert len(limiter._windows) <= MAX_KEYS
    assert not limiter.hit("otp-verify", "victim@example.test", 5, HOUR_S).allowed
    # Over is over: an hour on, the window has ended and the next guess is counted afresh.
    clock.advance(minutes=59)
    assert limiter.hit("otp-verify", "victim@example.test", 5, HOUR_S).allowed


def test_making_room_forgets_ended_windows_first_then_those_ending_soonest():
    clock = ManualClock()
    limiter = RateLimiter(clock)
    limiter.hit("hourly", "kept", 1, HOUR_S)
    for n in range(MAX_KEYS - 1):
        limiter.hit("minute", str(n), 1, 60)
    clock.advance(seconds=30)
    limiter.hit("minute", "new", 1, 60)  # full: the oldest one-minute windows end first
    assert len(limiter._windows) == MAX_KEYS - MAX_KEYS // 10 + 1
    assert ("hourly", "kept") in limiter._windows and ("minute", "new") in limiter._windows
    clock.advance(seconds=31)  # every earlier one-minute window is over: all of them go
    for n in range(MAX_KEYS // 10):
        limiter.hit("minute", f"later {n}", 1, 60)
    limiter.hit("minute", "last", 1, 60)
    assert ("hourly", "kept") in limiter._windows and ("minute", "new") in limiter._windows
    assert not any(key.isdigit() for _, key in limiter._windows)


def test_address_keys():
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2::1") == address_key("2001:DB8:1:2:abcd::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"  # a dual-stack socket's IPv4 caller
    assert address_key("not an address") == "not an address"
