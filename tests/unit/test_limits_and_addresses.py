"""Pure pieces of rate limiting: when a request fits again, and who the client is."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from api.limits import seconds_until_allowed
from api.security import client_address

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def scope(peer: str, forwarded: str | None = None) -> Any:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5000), "headers": headers}


def test_room_left_means_no_wait() -> None:
    assert seconds_until_allowed(5, 10, previous=0, previous_ttl=0, current=3, current_ttl=19) == 0


def test_a_full_first_window_waits_for_the_roll() -> None:
    # limits keeps the current key for two windows; it rolls once its TTL drops below one window.
    assert seconds_until_allowed(5, 10, previous=0, previous_ttl=0, current=5, current_ttl=20) == pytest.approx(10)


def test_a_decaying_previous_window_frees_room_before_the_roll() -> None:
    # 10 requests in the previous window with 8 s of it left weigh 8; with 3 current, 11 of 10 are used.
    # The previous weight must fall below 7, which takes 1 s; the current window rolls only in 9 s.
    assert seconds_until_allowed(10, 10, previous=10, previous_ttl=8, current=3, current_ttl=19) == pytest.approx(1)


def test_an_over_full_window_waits_past_the_roll_for_its_weight_to_decay() -> None:
    assert seconds_until_allowed(5, 10, previous=0, previous_ttl=0, current=10, current_ttl=15) == pytest.approx(10)


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    assert client_address(scope("203.0.113.5", "1.2.3.4"), []) == "203.0.113.5"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert client_address(scope("203.0.113.5", "1.2.3.4"), TRUSTED) == "203.0.113.5"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_wins() -> None:
    assert client_address(scope("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.9"), TRUSTED) == "198.51.100.7"


def test_all_trusted_hops_fall_back_to_the_left_most() -> None:
    assert client_address(scope("10.0.0.2", "10.1.1.1, 10.0.0.9"), TRUSTED) == "10.1.1.1"


def test_garbage_hops_are_not_trusted() -> None:
    assert client_address(scope("127.0.0.1", "not-an-ip"), TRUSTED) == "not-an-ip"
