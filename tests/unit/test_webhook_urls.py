"""Which webhook targets are refused (SSRF): every numeric form of a host, every range, in IPv4
and IPv6, checked without DNS and without a connection."""

from __future__ import annotations

import ipaddress

import pytest

from shared.webhook_urls import RefusedUrl, address_problem, check_url, numeric_host


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("10.0.0.1.", "10.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_every_numeric_form_of_a_host_is_the_address_it_stands_for(host: str, address: str) -> None:
    assert numeric_host(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "hooks.example.com", "1.2.3.example", "localhost"])
def test_names_are_not_numbers(host: str) -> None:
    assert numeric_host(host) is None


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.2.65536", "0x1g.1", "4294967296"])
def test_a_number_that_is_no_address_is_refused(host: str) -> None:
    with pytest.raises(RefusedUrl):
        numeric_host(host)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.1",
        "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.255", "0.0.0.0", "0.1.2.3",
        "224.0.0.1", "239.255.255.255", "240.0.0.1", "255.255.255.255", "192.0.0.8", "192.0.2.1",
        "198.51.100.7", "203.0.113.9", "198.18.0.1", "192.88.99.1",
        "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1", "3fff::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1", "2002:7f00:1::1", "2001::1", "100::1", "::127.0.0.1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "::ffff:127.0.0.1"])
def test_allow_private_opens_loopback_and_private_networks(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "100.64.0.1"])
def test_allow_private_never_opens_link_local_metadata_multicast_or_unspecified(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://[::1]:8080/",
        "http://localhost/", "http://a.b.localhost/", "http://LOCALHOST./", "http://169.254.169.254/",
        "https://user@example.com/", "https://user:pw@example.com/", "https://:pw@example.com/",
        "ftp://example.com/", "javascript:alert(1)", "https://", "https://exa mple.com/", "https://example.com:99999/",
        "https://under_score_ok.but..empty/", "https://example.com:/", "https://[::1/",
    ],
)  # fmt: skip
def test_urls_refused_before_dns(url: str) -> None:
    with pytest.raises(RefusedUrl):
        check_url(url, allow_http=True, allow_private=False)


def test_only_https_in_production() -> None:
    with pytest.raises(RefusedUrl, match="only https"):
        check_url("http://hooks.example.com/", allow_http=False, allow_private=False)
    assert check_url("https://hooks.example.com/x?y=1", allow_http=False, allow_private=False).path == "/x?y=1"


def test_a_name_is_left_to_the_resolver_and_a_loopback_name_is_loopback() -> None:
    named = check_url("https://Hooks.Example.com:8443/in", allow_http=False, allow_private=False)
    local = check_url("http://rcv.localhost:9000/", allow_http=True, allow_private=True)
    literal = check_url("http://0x7f.1:9000/", allow_http=True, allow_private=True)

    assert (named.host, named.port, named.address, named.literal) == ("hooks.example.com", 8443, None, False)
    assert (local.host, local.address, local.literal) == ("rcv.localhost", ipaddress.ip_address("127.0.0.1"), False)
    assert (literal.address, literal.literal) == (ipaddress.ip_address("127.0.0.1"), True)
