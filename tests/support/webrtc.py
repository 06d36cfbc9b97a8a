"""Real WebRTC audio peers (aiortc) for the call tests, signaling through any channel.

A :class:`AudioPeer` sends a generated tone (no media files, no numpy) and records the audio
frames it receives, decoded, with their loudness: silence is not audio arriving. It talks to
the other peer only through a :class:`Signaling` object (``send`` / ``receive`` of
:class:`Signal`), so the same peer runs over an in-process pipe (:func:`signaling_pair`) or over
the real server (tests/e2e/test_calls.py adapts ``SendCallSignal`` + ``SubscribeRoom``).

aiortc gathers every candidate before it returns the local description. With ``trickle=True``
(default) the peer strips the candidates out of its SDP and sends each one as its own ``ice``
signal, then an end-of-candidates ``ice`` signal (empty candidate): the ICE relay of the
signaling path then carries what the call needs, and no call connects unless it does.

``relay_only=True`` sets ``iceTransportPolicy="relay"`` (aioice gathers relay candidates
only), so the media must go through the TURN server given in ``ice_servers``;
:meth:`AudioPeer.selected_pair` shows which candidates ICE nominated.

ICE restart: aiortc 1.16 cannot restart ICE on an existing RTCPeerConnection (new ufrag/pwd on
the same transport). :meth:`AudioPeer.restart` does what such a client does after a network
change: a fresh connection (new ICE credentials, new candidates) re-offered in the same call;
the answering peer replaces its connection when an offer arrives with ICE credentials it has
not seen. For the signaling server this is exactly an ICE-restart offer on an existing call.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp
from av import AudioFrame

_log = logging.getLogger(__name__)

SignalKind = Literal["offer", "answer", "ice"]

SAMPLE_RATE = 8000
PTIME = 0.020
SAMPLES_PER_FRAME = int(SAMPLE_RATE * PTIME)
# Peak of a received frame above this counts as sound (the tone's peak is 8000 of 32767).
LOUD = 1000


@dataclass(frozen=True)
class Signal:
    """One signaling message. ``ice`` with an empty ``candidate`` means end of candidates."""

    kind: SignalKind
    sdp: str = ""
    candidate: str = ""
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    # An offer that restarts ICE in an existing call.
    ice_restart: bool = False


class Signaling(Protocol):
    async def send(self, signal: Signal) -> None: ...

    async def receive(self) -> Signal: ...


class QueueSignaling:
    """In-process signaling: what one side sends, the other receives."""

    def __init__(self, outbox: asyncio.Queue[Signal], inbox: asyncio.Queue[Signal]) -> None:
        self._outbox = outbox
        self._inbox = inbox
        self.sent: list[Signal] = []

    async def send(self, signal: Signal) -> None:
        self.sent.append(signal)
        await self._outbox.put(signal)

    async def receive(self) -> Signal:
        return await self._inbox.get()


def signaling_pair() -> tuple[QueueSignaling, QueueSignaling]:
    a_to_b: asyncio.Queue[Signal] = asyncio.Queue()
    b_to_a: asyncio.Queue[Signal] = asyncio.Queue()
    return QueueSignaling(a_to_b, b_to_a), QueueSignaling(b_to_a, a_to_b)


# --- media ---------------------------------------------------------------------------------------
def _tone_frame_bytes(frequency: int, amplitude: int) -> bytes:
    samples = array.array(
        "h",
        (
            round(amplitude * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE))
            for n in range(SAMPLES_PER_FRAME)
        ),
    )
    return samples.tobytes()


class ToneTrack(MediaStreamTrack):
    """A mono 8 kHz sine tone in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: int = 400, amplitude: int = 8000) -> None:
        super().__init__()
        # Whole periods per frame (400 Hz: 8 periods of 20 samples), so frames join seamlessly.
        self._payload = _tone_frame_bytes(frequency, amplitude)
        self._start: float | None = None
        self._timestamp = 0
        self.frames_sent = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += SAMPLES_PER_FRAME
            wait = self._start + self._timestamp / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        frame.planes[0].update(self._payload)
        frame.pts = self._timestamp
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.frames_sent += 1
        return frame


def _first_channel(frame: AudioFrame) -> array.array[int]:
    """The first channel's samples of a decoded packed s16 frame (empty for other formats)."""
    samples = array.array("h")
    if frame.format.name != "s16":
        return samples
    channels = len(frame.layout.channels)
    samples.frombytes(bytes(frame.planes[0])[: frame.samples * channels * 2])
    return samples[::channels] if channels > 1 else samples


def peak(frame: AudioFrame) -> int:
    """Largest absolute sample of a decoded s16 frame (0 for other formats)."""
    return max((abs(s) for s in _first_channel(frame)), default=0)


def tone_frequency(frame: AudioFrame) -> float:
    """The frequency of a pure tone in a decoded frame, from its zero crossings."""
    samples = _first_channel(frame)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    seconds = len(samples) / frame.sample_rate if frame.sample_rate else 0.0
    return crossings / 2 / seconds if seconds else 0.0


@dataclass
class Received:
    frames: int = 0
    loud_frames: int = 0
    # Counters per connection generation (0 = first connection, +1 per restart).
    by_generation: dict[int, int] = field(default_factory=dict)
    loud_by_generation: dict[int, int] = field(default_factory=dict)
    # Tone frequency of the latest loud frames (Hz): whose audio it is.
    frequencies: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def frequency(self) -> float:
        """Median tone frequency of the latest loud frames (0 when none)."""
        values = sorted(self.frequencies)
        return values[len(values) // 2] if values else 0.0


# --- the peer ------------------------------------------------------------------------------------
def _strip_candidates(sdp: str) -> str:
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(lines) + "\r\n"


def _ice_ufrags(sdp: str) -> tuple[str, ...]:
    return tuple(
        line.split(":", 1)[1].strip()
        for line in sdp.splitlines()
        if line.startswith("a=ice-ufrag:")
    )


@dataclass(frozen=True)
class SelectedPair:
    local_type: str
    remote_type: str
    local_address: tuple[str, int]
    remote_address: tuple[str, int]


class AudioPeer:
    """One side of an audio call. Call :meth:`start` once, then :meth:`call` on one side.

    Incoming signals are handled by a background task, in order: offers are answered, answers
    applied, ``ice`` signals added as remote candidates.
    """

    def __init__(
        self,
        name: str,
        signaling: Signaling,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        relay_only: bool = False,
        trickle: bool = True,
        frequency: int = 400,
    ) -> None:
        self.name = name
        self.signaling = signaling
        self.configuration = RTCConfiguration(
            iceServers=list(ice_servers),
            iceTransportPolicy=(
                RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
            ),
        )
        self.trickle = trickle
        self.frequency = frequency
        self.received = Received()
        self.generation = 0
        self.errors: list[BaseException] = []
        self.signals_received: list[Signal] = []
        self.connected = asyncio.Event()
        self.pc = self._new_pc()
        self._remote_ufrags: tuple[str, ...] = ()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle --

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.configuration)
        generation = self.generation
        pc.addTrack(ToneTrack(self.frequency))
        self.connected = asyncio.Event()
        connected = self.connected

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._consume(track, generation))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            _log.debug("%s: connection %s", self.name, pc.connectionState)
            if pc.connectionState == "connected":
                connected.set()

        return pc

    def start(self) -> None:
        """Start handling incoming signals."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._signal_loop(), name=f"{self.name}-signals")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task

    async def __aenter__(self) -> AudioPeer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- offer / answer --

    async def call(self, *, ice_restart: bool = False) -> None:
        """Create an offer and send it (then its candidates when trickling)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description("offer", ice_restart=ice_restart)

    async def restart(self) -> None:
        """ICE restart the aiortc way: a new connection (new ICE credentials) re-offered."""
        old = self.pc
        self.generation += 1
        self.pc = self._new_pc()
        await old.close()
        await self.call(ice_restart=True)

    async def _send_description(self, kind: SignalKind, *, ice_restart: bool = False) -> None:
        description = self.pc.localDescription
        sdp = _strip_candidates(description.sdp) if self.trickle else description.sdp
        await self.signaling.send(Signal(kind, sdp=sdp, ice_restart=ice_restart))
        if self.trickle:
            for candidate in self.local_candidates():
                await self.signaling.send(candidate)
            await self.signaling.send(Signal("ice", candidate="", sdp_mid=None, sdp_mline_index=0))

    def local_candidates(self) -> list[Signal]:
        """This connection's gathered candidates as ``ice`` signals."""
        signals = []
        for index, transceiver in enumerate(self.pc.getTransceivers()):
            gatherer = transceiver.sender.transport.transport.iceGatherer
            for candidate in gatherer.getLocalCandidates():
                signals.append(
                    Signal(
                        "ice",
                        candidate="candidate:" + candidate_to_sdp(candidate),
                        sdp_mid=transceiver.mid,
                        sdp_mline_index=index,
                    )
                )
        return signals

    async def _signal_loop(self) -> None:
        while True:
            signal = await self.signaling.receive()
            self.signals_received.append(signal)
            try:
                await self._handle(signal)
            except Exception as exc:  # a test asserts on peer.errors
                _log.exception("%s: handling %s failed", self.name, signal.kind)
                self.errors.append(exc)

    async def _handle(self, signal: Signal) -> None:
        if signal.kind == "offer":
            ufrags = _ice_ufrags(signal.sdp)
            if self._remote_ufrags and ufrags != self._remote_ufrags:
                # The remote peer restarted ICE: answer on a fresh connection.
                old = self.pc
                self.generation += 1
                self.pc = self._new_pc()
                await old.close()
            self._remote_ufrags = ufrags
            await self.pc.setRemoteDescription(RTCSessionDescription(signal.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self._send_description("answer")
        elif signal.kind == "answer":
            self._remote_ufrags = _ice_ufrags(signal.sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(signal.sdp, "answer"))
        elif signal.kind == "ice":
            await self.pc.addIceCandidate(self._candidate(signal))

    @staticmethod
    def _candidate(signal: Signal) -> RTCIceCandidate | None:
        if not signal.candidate:
            return None
        text = signal.candidate.removeprefix("a=").removeprefix("candidate:")
        candidate = candidate_from_sdp(text)
        candidate.sdpMid = signal.sdp_mid
        candidate.sdpMLineIndex = signal.sdp_mline_index
        return candidate

    # -- media in --

    async def _consume(self, track: MediaStreamTrack, generation: int) -> None:
        received = self.received
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                received.frames += 1
                received.by_generation[generation] = received.by_generation.get(generation, 0) + 1
                if isinstance(frame, AudioFrame) and peak(frame) >= LOUD:
                    received.frequencies.append(tone_frequency(frame))
                    received.loud_frames += 1
                    received.loud_by_generation[generation] = (
                        received.loud_by_generation.get(generation, 0) + 1
                    )

    async def wait_for_audio(
        self, loud_frames: int = 10, *, generation: int | None = None, timeout: float = 10.0
    ) -> None:
        """Until ``loud_frames`` frames with sound arrived (on ``generation`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            got = (
                self.received.loud_frames
                if generation is None
                else self.received.loud_by_generation.get(generation, 0)
            )
            if got >= loud_frames:
                return
            if self.errors:
                raise AssertionError(f"{self.name}: signaling failed: {self.errors[0]!r}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: {got} loud frames after {timeout:g} s (want {loud_frames}); "
                    f"connection {self.pc.connectionState}, ice {self.pc.iceConnectionState}, "
                    f"received {self.received}"
                )
            await asyncio.sleep(0.02)

    # -- inspection --

    def selected_pair(self) -> SelectedPair:
        """The candidate pair ICE nominated for the (bundled) media transport."""
        transceiver = self.pc.getTransceivers()[0]
        connection = transceiver.sender.transport.transport._connection
        pairs = list(connection._nominated.values())
        if not pairs:
            raise AssertionError(f"{self.name}: no nominated candidate pair")
        pair = pairs[0]
        return SelectedPair(
            local_type=pair.local_candidate.type,
            remote_type=pair.remote_candidate.type,
            local_address=pair.local_addr,
            remote_address=pair.remote_addr,
        )

    def local_candidate_types(self) -> set[str]:
        return {
            c.type
            for t in self.pc.getTransceivers()
            for c in t.sender.transport.transport.iceGatherer.getLocalCandidates()
        }
