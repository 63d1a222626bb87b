"""The two aiortc peer connections of one real client (LiveKit dual-PC mode).

* ``SubscriberPeer``: the emulator offers. It carries every other participant's audio
  (msid ``"<PA_sid>|<TR_sid>"``) and the server data channels ``_reliable``/``_lossy``.
  Changes are coalesced into one renegotiation at a time.
* ``PublisherPeer``: the client offers, aiortc answers. The client's ``_reliable``,
  ``_lossy`` (and ``_data_track``) channels carry its DataPackets to the emulator, and its
  audio tracks are forwarded to the other participants (``ClientSession.forward_track``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models, rtc

from .media import drain

if TYPE_CHECKING:
    from .room import Participant, TrackRecord
    from .signal import ClientSession

logger = logging.getLogger("tests.emulator.peers")

RELIABLE, LOSSY = models.DataPacket.Kind.RELIABLE, models.DataPacket.Kind.LOSSY


def parse_candidate(candidate_init: str) -> RTCIceCandidate | None:
    """``TrickleRequest.candidateInit`` JSON -> aiortc candidate (None for end-of-candidates)."""
    init = json.loads(candidate_init)
    cand = (init.get("candidate") or "").strip()
    if not cand:
        return None
    if cand.startswith("candidate:"):
        cand = cand[len("candidate:") :]
    c = candidate_from_sdp(cand)
    c.sdpMid = init.get("sdpMid")
    c.sdpMLineIndex = init.get("sdpMLineIndex")
    return c


class _Peer:
    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.pc: RTCPeerConnection | None = None
        self._pending_candidates: list[RTCIceCandidate] = []
        self._remote_set = False

    def _new_pc(self) -> RTCPeerConnection:
        # BALANCED (aiortc's default), not MAX_BUNDLE: with MAX_BUNDLE and the data channel
        # created first, aiortc stops the shared transport when it applies the BUNDLE answer.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.BALANCED))

        @pc.on("connectionstatechange")
        def _state() -> None:
            logger.debug("%s %s: %s", type(self).__name__, self.session.identity, pc.connectionState)

        return pc

    async def add_candidate(self, candidate_init: str) -> None:
        try:
            c = parse_candidate(candidate_init)
        except Exception:  # noqa: BLE001
            logger.warning("unparsable trickle from %s: %r", self.session.identity, candidate_init)
            return
        logger.debug("trickle %s %s: %s", type(self).__name__, self.session.identity, candidate_init)
        if c is None:
            return
        if self.pc is None or not self._remote_set:
            self._pending_candidates.append(c)
            return
        await self.pc.addIceCandidate(c)

    async def _flush_candidates(self) -> None:
        self._remote_set = True
        pending, self._pending_candidates = self._pending_candidates, []
        for c in pending:
            assert self.pc is not None
            await self.pc.addIceCandidate(c)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


class SubscriberPeer(_Peer):
    def __init__(self, session: ClientSession) -> None:
        super().__init__(session)
        self.pc = self._new_pc()
        self._reliable = self.pc.createDataChannel("_reliable", ordered=True)
        self._lossy = self.pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
        self._queued: list[tuple[int, bytes]] = []
        for dc in (self._reliable, self._lossy):
            dc.on("open", self._flush_data)
        self.tracks: dict[str, tuple] = {}  # track sid -> (transceiver, the subscriber's own track)
        self._dirty = False
        self._task: asyncio.Task | None = None
        self._answer: asyncio.Future | None = None
        self._offer_id = 0
        self.negotiations = 0

    # -- media ---------------------------------------------------------------------------
    def add_track(self, p: Participant, track: TrackRecord, *, negotiate: bool = True) -> None:
        if track.sid in self.tracks or track.audio is None or self.session.closed:
            return
        st = track.audio.track_for(self.session.identity)
        assert self.pc is not None
        tr = self.pc.addTransceiver(st, direction="sendonly")
        tr.sender._stream_id = f"{p.sid}|{track.sid}"
        tr.sender._track_id = track.sid
        self.tracks[track.sid] = (tr, st)
        if negotiate:
            self.negotiate()

    def remove_track(self, track_sid: str) -> None:
        entry = self.tracks.pop(track_sid, None)
        if entry is None or self.session.closed:
            return
        tr, st = entry
        tr.sender.replaceTrack(None)
        tr.direction = "inactive"
        st.stop()
        self.negotiate()

    # -- negotiation -----------------------------------------------------------------------
    def negotiate(self) -> None:
        """Schedule an offer; changes that arrive while one is in flight get one more round."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._negotiate_loop())

    async def _negotiate_loop(self) -> None:
        pc = self.pc
        assert pc is not None
        try:
            while self._dirty and not self.session.closed:
                self._dirty = False
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)
                self._offer_id += 1
                self._answer = asyncio.get_running_loop().create_future()
                logger.debug("OFFER to %s:\n%s", self.session.identity, pc.localDescription.sdp)
                await self.session.send(
                    rtc.SignalResponse(
                        offer=rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp, id=self._offer_id)
                    )
                )
                sdp = await asyncio.wait_for(self._answer, 20)
                logger.debug("ANSWER from %s:\n%s", self.session.identity, sdp)
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                self.negotiations += 1
                await self._flush_candidates()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            if not self.session.closed:
                logger.exception("subscriber negotiation with %s failed", self.session.identity)

    def on_answer(self, sdp: str) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(sdp)
        else:
            logger.warning("unexpected subscriber answer from %s", self.session.identity)

    # -- data ------------------------------------------------------------------------------
    def send_data(self, data: bytes, kind: int = RELIABLE) -> None:
        if self.session.closed:
            return
        dc = self._lossy if kind == LOSSY else self._reliable
        if dc.readyState == "open" and not self._queued:
            dc.send(data)
        elif dc.readyState in ("connecting", "open"):
            self._queued.append((kind, data))
            self._flush_data()

    def _flush_data(self) -> None:
        while self._queued:
            kind, data = self._queued[0]
            dc = self._lossy if kind == LOSSY else self._reliable
            if dc.readyState != "open":
                return
            self._queued.pop(0)
            dc.send(data)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for _, st in self.tracks.values():
            st.stop()
        self.tracks.clear()
        await super().close()


class PublisherPeer(_Peer):
    def __init__(self, session: ClientSession) -> None:
        super().__init__(session)
        self._drains: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    def _ensure_pc(self) -> RTCPeerConnection:
        if self.pc is None:
            pc = self.pc = self._new_pc()

            @pc.on("datachannel")
            def _on_dc(channel) -> None:
                label = channel.label
                kind = LOSSY if label == "_lossy" else RELIABLE
                if label not in ("_reliable", "_lossy"):
                    return

                @channel.on("message")
                def _on_message(message) -> None:
                    if isinstance(message, str):
                        message = message.encode()
                    self.session.on_client_data(message, kind)

            @pc.on("track")
            def _on_track(track) -> None:
                if track.kind == "audio" and self.session.forward_track(track):
                    return
                task = asyncio.get_running_loop().create_task(drain(track))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)

        return self.pc

    async def on_offer(self, sd: rtc.SessionDescription) -> None:
        async with self._lock:
            pc = self._ensure_pc()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sd.sdp, type="offer"))
            await self._flush_candidates()
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await self.session.send(
                rtc.SignalResponse(answer=rtc.SessionDescription(type="answer", sdp=pc.localDescription.sdp, id=sd.id))
            )

    async def close(self) -> None:
        for t in list(self._drains):
            t.cancel()
        await super().close()
