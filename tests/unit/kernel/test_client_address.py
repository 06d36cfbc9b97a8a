from __future__ import annotations

from server.kernel.pipeline import TrustedProxies, client_address

PROXIES = TrustedProxies(["127.0.0.1", "10.42.0.0/16"])


def test_direct_callers_are_their_peer_even_with_a_forged_header() -> None:
    assert client_address("ipv4:203.0.113.9:5555", {"x-forwarded-for": "1.2.3.4"}, PROXIES) == (
        "203.0.113.9"
    )
    assert client_address("ipv6:[2001:db8::1]:443", {}, PROXIES) == "2001:db8::1"


def test_trusted_proxy_hands_over_the_rightmost_hop() -> None:
    header = {"x-forwarded-for": "6.6.6.6, 198.51.100.7"}
    assert client_address("ipv4:127.0.0.1:4000", header, PROXIES) == "198.51.100.7"
    assert client_address("ipv4:10.42.3.17:4000", header, PROXIES) == "198.51.100.7"
    assert client_address("ipv4:10.43.0.1:4000", header, PROXIES) == "10.43.0.1"
