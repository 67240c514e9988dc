"""The delivery transport against real local receivers: it connects to the address it checked and
to no other, resolves once, keeps TLS verification and SNI for the URL's own name, refuses names
that resolve inside, stops at its deadline and never follows redirects.

Names resolve through `FakeResolver`, which the tests control; every address used is loopback
(127.0.0.0/8), and `loopback_only` is on as in every test process.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import trustme

from shared.webhook_urls import Address
from tests.fakes.receiver import Answer, Receiver
from worker.webhooks.transport import DeliveryFailed, SystemResolver, Transport


class FakeResolver:
    """Answers each name from a script of answers, one per lookup, and counts the lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        script = self.answers[host]
        found = script.pop(0) if len(script) > 1 else script[0]
        return [ipaddress.ip_address(address) for address in found]


def transport(
    resolver: FakeResolver, *, allow_private: bool = True, timeout: float = 5.0, **extra: object
) -> Transport:
    return Transport(
        resolver,
        timeout=timeout,
        allow_http=True,
        allow_private=allow_private,
        loopback_only=True,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    checked, other = Receiver(host="127.0.0.2").start(), Receiver(host="127.0.0.3").start()
    yield checked, other
    checked.stop()
    other.stop()


def test_the_connection_goes_to_the_address_that_was_checked_and_the_name_is_resolved_once(
    receivers: tuple[Receiver, Receiver],
) -> None:
    checked, other = receivers
    # A rebinding resolver: the first answer passes the check, a second lookup would get another.
    resolver = FakeResolver({"hooks.test": [["127.0.0.2"], ["127.0.0.3"]]})

    response = transport(resolver).post(f"http://hooks.test:{checked.port}/in", b"{}", {"webhook-id": "msg_1"})

    assert response.status == 204
    assert response.address == "127.0.0.2"
    assert resolver.lookups == ["hooks.test"]
    (received,) = checked.wait_for(1)
    assert received.local == "127.0.0.2"
    assert received.headers["Host"] == f"hooks.test:{checked.port}"
    assert other.received == []


def test_a_name_that_resolves_to_a_private_address_is_refused_without_connecting(
    receivers: tuple[Receiver, Receiver],
) -> None:
    checked, _ = receivers
    resolver = FakeResolver({"inside.test": [["127.0.0.2"]], "mixed.test": [["93.184.216.34", "10.0.0.7"]]})
    guarded = transport(resolver, allow_private=False)

    with pytest.raises(DeliveryFailed, match=re.escape("refused address: inside.test resolves to 127.0.0.2")):
        guarded.post(f"http://inside.test:{checked.port}/", b"{}", {})
    with pytest.raises(DeliveryFailed, match=re.escape("10.0.0.7")) as refused:
        guarded.post("https://mixed.test/", b"{}", {})

    assert refused.value.retry is True  # DNS may change: the schedule tries again
    assert checked.received == []


def test_in_tests_nothing_but_loopback_is_ever_connected_to() -> None:
    public = FakeResolver({"public.test": [["93.184.216.34"]]})

    with pytest.raises(DeliveryFailed, match="loopback only"):
        transport(public, allow_private=False).post("https://public.test/", b"{}", {})
    with pytest.raises(DeliveryFailed, match="resolves no names"):
        Transport(SystemResolver(), timeout=1, allow_http=True, allow_private=True, loopback_only=True).post(
            "https://example.com/", b"{}", {}
        )


def test_tls_is_verified_for_the_urls_name_which_is_also_the_sni() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(server_context)
    receiver = Receiver(tls=server_context, host="127.0.0.2").start()

    def trusting() -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context

    try:
        resolver = FakeResolver({"hooks.test": [["127.0.0.2"]], "wrong.test": [["127.0.0.2"]]})
        delivered = transport(resolver, context_factory=trusting).post(
            f"https://hooks.test:{receiver.port}/", b"{}", {}
        )
        with pytest.raises(DeliveryFailed, match=re.escape("TLS certificate not valid for wrong.test")):
            transport(resolver, context_factory=trusting).post(f"https://wrong.test:{receiver.port}/", b"{}", {})
        with pytest.raises(DeliveryFailed, match="TLS certificate not valid"):
            transport(resolver).post(f"https://hooks.test:{receiver.port}/", b"{}", {})  # the system CAs

        assert delivered.status == 204
        assert receiver.server_names[0] == "hooks.test"
    finally:
        receiver.stop()


def test_a_receiver_that_hangs_is_cut_off_at_the_deadline() -> None:
    receiver = Receiver().start()
    receiver.default = Answer(hang=30)
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=re.escape("timed out after 0.5s")):
            transport(FakeResolver({}), timeout=0.5).post(receiver.url(), b"{}", {})
        assert time.monotonic() - started < 5  # the deadline, not the receiver, ended it
    finally:
        receiver.stop()


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline_too() -> None:
    import socket  # noqa: PLC0415

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        for char in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            if stop.wait(0.1):
                break
            connection.sendall(bytes([char]))
        connection.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryFailed, match="timed out after 1s"):
            transport(FakeResolver({}), timeout=1.0).post(f"http://127.0.0.1:{port}/", b"{}", {})
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_redirects_are_not_followed() -> None:
    receiver = Receiver().start()
    receiver.default = Answer(302, {"Location": "http://127.0.0.3/elsewhere"})
    try:
        response = transport(FakeResolver({})).post(receiver.url(), b"{}", {})
        assert response.status == 302
        assert len(receiver.received) == 1
    finally:
        receiver.stop()


def test_a_refused_connection_is_a_failure_worth_retrying() -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(DeliveryFailed, match=re.escape("connection to 127.0.0.1")) as failed:
            transport(FakeResolver({})).post(f"http://127.0.0.1:{port}/", b"{}", {})
    assert failed.value.retry is True
