"""Which webhook URLs and addresses we may deliver to (SSRF protection): pure, no I/O.

The API runs next to Redis, cloud metadata services and private networks, so a webhook URL is
only a target when every address it names or resolves to is a public unicast address:

- `https://` only in production (`http://` elsewhere), no credentials in the URL, a host;
- a host written as a number in any form a client would accept (`2130706433`, `0x7f.1`,
  `017700000001`, `127.1`, `[::ffff:127.0.0.1]`) is that address, checked as such;
- refused: loopback, private, link-local (169.254/16 with the metadata services, fe80::/10),
  carrier-grade NAT (100.64/10), multicast, reserved, unspecified, benchmarking and documentation
  ranges, in IPv4 and IPv6; IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96) IPv6 addresses
  are judged by the IPv4 address they carry; 6to4, Teredo and local NAT64 prefixes are refused;
- `localhost` and names under `.localhost` are loopback (RFC 6761), without asking DNS.

`allow_private` (WEBHOOK_ALLOW_PRIVATE, refused in production) lets local development and tests
deliver to loopback and private addresses. The worker resolves names and connects to the very
address it checked (`worker.webhooks.transport`); the API refuses at submission what needs no DNS.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "Address",
    "RefusedUrl",
    "Target",
    "address_problem",
    "check_url",
    "numeric_host",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048


class RefusedUrl(ValueError):
    """A webhook URL or address we will not deliver to; the message says why."""


_V4_REFUSED = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo 2001::/32 included)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: reaches whatever IPv4 address it embeds
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
#: What WEBHOOK_ALLOW_PRIVATE opens: loopback and private networks (never link-local: the metadata
#: services live there).
_ALLOWED_PRIVATE: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_NAMES = re.compile(r"^(?:.+\.)?localhost\.?$", re.IGNORECASE)
_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped, NAT64 or (deprecated) compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: Address, *, allow_private: bool = False) -> str | None:
    """Why `address` may not be delivered to, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            problem = address_problem(embedded, allow_private=allow_private)
            return f"{problem} (carried in IPv6 address {address})" if problem else None
        if address.scope_id:
            return f"{address} is a scoped (link-local) address"
        refused = any(address in net for net in _V6_REFUSED)
    else:
        refused = any(address in net for net in _V4_REFUSED)
    if allow_private and any(address in net for net in _ALLOWED_PRIVATE):
        return None
    if refused or not address.is_global:
        return f"{address} is not a public address (loopback, private, link-local, reserved or similar)"
    return None


def _number(part: str) -> int | None:
    """One part of a numeric IPv4 host as URL parsers read it: 0x hex, leading-0 octal, decimal."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
        return int(part[2:] or "0", 16)
    if re.fullmatch(r"0[0-7]+", part):
        return int(part, 8)
    if re.fullmatch(r"[0-9]+", part):
        return int(part)
    return None


def numeric_host(host: str) -> Address | None:
    """The address a host written as a number stands for (every form the WHATWG URL parser and
    `inet_aton` accept), None for a name. Raises `RefusedUrl` for a number that is no address."""
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise RefusedUrl(f"{host} is not a valid IPv6 address") from None
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()  # a trailing dot
    if _number(parts[-1]) is None:
        return None  # a name: its last label is not a number
    numbers = [_number(part) for part in parts]
    if len(numbers) > 4 or any(number is None for number in numbers):
        raise RefusedUrl(f"{host} is neither a host name nor an IPv4 address")
    values = [number for number in numbers if number is not None]
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        raise RefusedUrl(f"{host} is out of range for an IPv4 address")
    value = last
    for index, part in enumerate(leading):
        value += part << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL that passed every check that needs no DNS."""

    url: str
    scheme: str  # http | https
    host: str  # the name (lower case, IDNA) or the address as written in the URL
    port: int
    path: str  # path and query, at least "/"
    address: Address | None  # set when the host is an address (or a loopback name): nothing to resolve
    literal: bool = False  # the URL names its host by address, not by name


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise RefusedUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise RefusedUrl("the URL contains white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise RefusedUrl(f"the URL cannot be parsed: {exc}") from None
    return parts


def _host_name(raw: str) -> str:
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise RefusedUrl(f"{raw!r} is not a valid host name") from None
    labels = host.rstrip(".").split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise RefusedUrl(f"{raw!r} is not a valid host name")
    return host


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """The URL's target if nothing refuses it before DNS; raises `RefusedUrl` saying why."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise RefusedUrl("only https:// URLs are accepted" + (" (or http:// outside production)" if allow_http else ""))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RefusedUrl("the URL must not contain credentials")
    raw_host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
    if not raw_host:
        raise RefusedUrl("the URL has no host")
    address = numeric_host(raw_host)
    host = raw_host if address is not None else _host_name(raw_host)
    literal = address is not None
    if address is None and _LOOPBACK_NAMES.match(host):
        address = ipaddress.IPv4Address("127.0.0.1")
    if address is not None:
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            raise RefusedUrl(f"{raw_host} is refused: {problem}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    port = parts.port or (443 if scheme == "https" else 80)
    return Target(url=url, scheme=scheme, host=host, port=port, path=path, address=address, literal=literal)
