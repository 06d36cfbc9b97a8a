"""The WebRTC harness itself, before any server is involved: real aiortc peers, real coturn.

Two peers exchange audio over an in-process signaling pipe, first directly on loopback, then
forced through a TURN relay (coturn, time-limited credentials computed the way GetIceServers
computes them). Candidates travel as separate ``ice`` signals (stripped from the SDP), so the
ICE relay path the server offers is what makes these calls connect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiortc import RTCIceServer

from tests.support.coturn import Coturn, turn_credentials
from tests.support.stack import Secrets
from tests.support.webrtc import AudioPeer, Signal, signaling_pair


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory, secrets: Secrets) -> Iterator[Coturn]:
    with Coturn(tmp_path_factory.mktemp("coturn")) as running:
        secrets.issued.append(running.secret)
        yield running


@pytest.fixture
async def pair() -> AsyncIterator[tuple[AudioPeer, AudioPeer]]:
    a_side, b_side = signaling_pair()
    peers = (AudioPeer("alice", a_side, frequency=400), AudioPeer("bob", b_side, frequency=600))
    yield peers
    for peer in peers:
        await peer.close()


def relay_peers(coturn: Coturn) -> tuple[AudioPeer, AudioPeer]:
    a_side, b_side = signaling_pair()
    peers = []
    for name, side in (("alice", a_side), ("bob", b_side)):
        username, password = turn_credentials(coturn.secret, name)
        peers.append(
            AudioPeer(
                name,
                side,
                ice_servers=[RTCIceServer(coturn.url, username, password)],
                relay_only=True,
            )
        )
    return peers[0], peers[1]


async def test_direct_call_on_loopback_carries_audio_both_ways(
    pair: tuple[AudioPeer, AudioPeer],
) -> None:
    alice, bob = pair
    alice.start()
    bob.start()
    await alice.call()
    await bob.wait_for_audio(10)
    await alice.wait_for_audio(10)
    # Each hears the other's tone (400 Hz from alice, 600 Hz from bob).
    assert bob.received.frequency() == pytest.approx(400, rel=0.05)
    assert alice.received.frequency() == pytest.approx(600, rel=0.05)
    assert alice.selected_pair().local_type == "host"
    # Candidates went as their own signals, not inside the SDP.
    kinds = [s.kind for s in bob.signals_received]
    assert kinds[0] == "offer"
    assert kinds.count("ice") >= 2
    assert "a=candidate:" not in bob.signals_received[0].sdp
    assert not alice.errors
    assert not bob.errors


async def test_without_the_ice_signals_the_call_does_not_connect() -> None:
    a_side, b_side = signaling_pair()
    alice, bob = AudioPeer("alice", a_side), AudioPeer("bob", b_side)
    try:
        bob.start()
        await alice.pc.setLocalDescription(await alice.pc.createOffer())
        offer = alice.pc.localDescription.sdp
        stripped = "\r\n".join(
            line for line in offer.splitlines() if not line.startswith("a=candidate:")
        )
        await a_side.send(Signal("offer", sdp=stripped + "\r\n"))
        with pytest.raises(AssertionError, match="0 loud frames"):
            await bob.wait_for_audio(1, timeout=1.5)
    finally:
        await alice.close()
        await bob.close()


async def test_relay_only_call_through_coturn(coturn: Coturn) -> None:
    alice, bob = relay_peers(coturn)
    try:
        alice.start()
        bob.start()
        await alice.call()
        await bob.wait_for_audio(10)
        await alice.wait_for_audio(10)
        for peer in (alice, bob):
            assert peer.local_candidate_types() == {"relay"}
            selected = peer.selected_pair()
            assert (selected.local_type, selected.remote_type) == ("relay", "relay")
            # Both ends of the pair are coturn relay addresses (its relay port range).
            assert coturn.min_port <= selected.local_address[1] <= coturn.max_port
            assert coturn.min_port <= selected.remote_address[1] <= coturn.max_port
    finally:
        await alice.close()
        await bob.close()


async def test_wrong_turn_credentials_gather_no_relay_candidate(coturn: Coturn) -> None:
    a_side, _ = signaling_pair()
    username, _password = turn_credentials(coturn.secret, "mallory")
    _, forged = turn_credentials("not-the-secret", "mallory")
    peer = AudioPeer(
        "mallory",
        a_side,
        ice_servers=[RTCIceServer(coturn.url, username, forged)],
        relay_only=True,
    )
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        assert peer.local_candidate_types() == set()
    finally:
        await peer.close()


async def test_expired_turn_credentials_are_refused(coturn: Coturn) -> None:
    a_side, _ = signaling_pair()
    username, password = turn_credentials(coturn.secret, "late", ttl_seconds=-60)
    peer = AudioPeer(
        "late", a_side, ice_servers=[RTCIceServer(coturn.url, username, password)], relay_only=True
    )
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        assert peer.local_candidate_types() == set()
    finally:
        await peer.close()


async def test_ice_restart_recovers_the_call(pair: tuple[AudioPeer, AudioPeer]) -> None:
    alice, bob = pair
    alice.start()
    bob.start()
    await alice.call()
    await bob.wait_for_audio(5, generation=0)
    first = alice.selected_pair()
    await alice.restart()
    await bob.wait_for_audio(10, generation=1)
    await alice.wait_for_audio(10, generation=1)
    assert bob.generation == 1
    offers = [s for s in bob.signals_received if s.kind == "offer"]
    assert [o.ice_restart for o in offers] == [False, True]
    # A new ICE session: new local transport address on the restarted side.
    assert alice.selected_pair().local_address != first.local_address


def test_turn_credentials_follow_coturns_scheme() -> None:
    username, password = turn_credentials("s3cret", "user-1", 600, now=1_700_000_000)
    assert username == "1700000600:user-1"
    # base64(HMAC-SHA1("s3cret", username)), computed independently.
    want = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest())
    assert password == want.decode()


def test_coturn_logs_do_not_contain_its_secret(coturn: Coturn) -> None:
    assert coturn.log_text()
    assert coturn.secret not in coturn.log_text()
    assert Path(coturn.config_path).stat().st_mode & 0o077 == 0
