"""Audio of emulated speakers: PCM preparation, a shared real-time clock, aiortc tracks.

Two kinds of track source, each able to give every subscriber a track of its own
(``track_for``): an ``AudioSource`` plays an emulated speaker's PCM, a ``ForwardedAudio``
passes on the audio a real client (a browser, an SDK) publishes.

One ``AudioSource`` per emulated track holds the 48 kHz s16 PCM and the clock of the
speaker: it starts when the first subscriber (or the one named by ``start_on``) pulls
its first frame, so a bot that joins after the speaker was added still hears sample 0.
Each subscriber peer connection gets its own ``SpeakerTrack`` (an aiortc track can feed
only one sender); every ``SpeakerTrack`` reads the frame that the shared clock says is
due, so two subscribers hear the same audio at the same wall-clock time.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger("tests.emulator.media")

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_S = FRAME_SAMPLES / RATE
_TIME_BASE = fractions.Fraction(1, RATE)


def to_48k_s16(pcm: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """Mono float PCM (-1..1) at ``sample_rate`` -> mono int16 at 48 kHz (libswresample)."""
    x = np.asarray(pcm, dtype=np.float32)
    if x.ndim != 1:
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        else:
            raise ValueError(f"expected mono PCM, got shape {x.shape}")
    if sample_rate != RATE and len(x):
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = 0
        frame.time_base = fractions.Fraction(1, sample_rate)
        out = resampler.resample(frame) + resampler.resample(None)
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in out]) if out else np.zeros(0, np.float32)
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16)


class AudioSource:
    """The audio of one published track and the clock that plays it."""

    def __init__(
        self, pcm: np.ndarray, sample_rate: int = 16000, *, start_delay: float = 0.0, start_on: str | None = None
    ) -> None:
        self.samples = to_48k_s16(pcm, sample_rate)
        self.duration = len(self.samples) / RATE
        self.start_delay = float(start_delay)
        self.start_on = start_on
        self._offset = int(round(self.start_delay * RATE))
        #: time.monotonic() of frame 0 of the clock (silence first when start_delay > 0)
        self.clock_start: float | None = None
        self.started = asyncio.Event()
        self.muted = False
        #: worst lateness seen when a frame was handed to aiortc (seconds); CPU starvation shows here
        self.max_lag = 0.0

    def maybe_start(self, subscriber_identity: str, at: float) -> None:
        if self.clock_start is None and (self.start_on is None or self.start_on == subscriber_identity):
            self.clock_start = at
            self.started.set()

    @property
    def audio_started_at(self) -> float | None:
        """time.monotonic() at which sample 0 of the PCM was due on the wire."""
        return None if self.clock_start is None else self.clock_start + self.start_delay

    @property
    def audio_ends_at(self) -> float | None:
        start = self.audio_started_at
        return None if start is None else start + self.duration

    def track_for(self, subscriber_identity: str) -> MediaStreamTrack:
        return SpeakerTrack(self, subscriber_identity)

    def frame(self, index: int) -> np.ndarray:
        out = np.zeros(FRAME_SAMPLES, np.int16)
        if self.muted or index < 0:
            return out
        a = index * FRAME_SAMPLES - self._offset
        lo, hi = max(a, 0), min(a + FRAME_SAMPLES, len(self.samples))
        if lo < hi:
            out[lo - a : hi - a] = self.samples[lo:hi]
        return out


class SpeakerTrack(MediaStreamTrack):
    """One subscriber's view of an AudioSource: 20 ms s16 48 kHz frames (mono content) in real time."""

    kind = "audio"

    def __init__(self, source: AudioSource, subscriber_identity: str) -> None:
        super().__init__()
        self.source = source
        self._subscriber = subscriber_identity
        self._t0: float | None = None
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
            self.source.maybe_start(self._subscriber, now)
        due = self._t0 + self._n * FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        else:
            lag = now - due
            if lag > self.source.max_lag:
                if lag > 0.2 and self.source.max_lag <= 0.2:
                    logger.warning("speaker audio is %.0f ms late (CPU starved?)", lag * 1000)
                self.source.max_lag = lag
        src = self.source
        if src.clock_start is None:
            data = np.zeros(FRAME_SAMPLES, np.int16)
        else:
            data = src.frame(int(round((due - src.clock_start) / FRAME_S)))
        # Hand aiortc stereo: its Opus encoder converts to stereo, and libswresample's
        # mono->stereo upmix is -3 dB (the receiver would see 0.707x the amplitude).
        frame = av.AudioFrame.from_ndarray(np.repeat(data, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME_SAMPLES
        frame.time_base = _TIME_BASE
        self._n += 1
        return frame


class ForwardedAudio:
    """The audio a real client publishes, passed on to every subscriber (the SFU's forwarding).

    A real SFU forwards RTP as it is; here aiortc decodes the client's Opus and each
    subscriber's sender encodes it again, which is all a test needs. The client's track
    arrives on its publisher connection some time after ``add_track``; until then, and
    whenever the client sends nothing (DTX, a stalled browser), nothing is sent on.
    """

    def __init__(self, cid: str = "") -> None:
        self.cid = cid  # the client's own track id (AddTrackRequest.cid = the SDP msid's track id)
        self.muted = False
        self.frames_in = 0
        self.received = asyncio.Event()
        self._outlets: set[asyncio.Queue] = set()
        self._pump: asyncio.Task | None = None

    def attach(self, remote: MediaStreamTrack) -> None:
        """Start passing on ``remote`` (the publisher connection's track)."""
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._forward(remote))

    async def _forward(self, remote: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await remote.recv()
                self.frames_in += 1
                self.received.set()
                data = frame.to_ndarray().reshape(-1)
                if frame.format.name != "s16" or frame.layout.name != "stereo" or frame.sample_rate != RATE:
                    # aiortc's Opus decoder gives s16 stereo 48 kHz; anything else is resampled.
                    resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
                    data = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame)])
                for outlet in list(self._outlets):
                    if outlet.full():  # a subscriber that stopped reading loses the oldest audio
                        outlet.get_nowait()
                    outlet.put_nowait(data)
        except (MediaStreamError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - a dying PC must not log tracebacks in tests
            logger.debug("forwarding stopped", exc_info=True)

    def track_for(self, subscriber_identity: str) -> MediaStreamTrack:
        return ForwardedTrack(self)

    def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()


class ForwardedTrack(MediaStreamTrack):
    """One subscriber's copy of a client's published audio, as 20 ms s16 stereo 48 kHz frames."""

    kind = "audio"

    def __init__(self, source: ForwardedAudio) -> None:
        super().__init__()
        self.source = source
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=50)  # 1 s of audio
        self._pending = np.zeros(0, np.int16)
        self._n = 0
        source._outlets.add(self._queue)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        want = FRAME_SAMPLES * 2  # interleaved stereo
        while len(self._pending) < want:
            try:
                data = await asyncio.wait_for(self._queue.get(), 0.5)
            except TimeoutError:
                # Nothing sent (DTX, a stalled client): nothing forwarded, as an SFU does; the
                # receiver's jitter buffer fills the gap. Silence is never inserted mid-word.
                if self.readyState != "live":
                    raise MediaStreamError from None
                continue
            if self.readyState != "live":
                raise MediaStreamError
            self._pending = np.concatenate([self._pending, data])
        data, self._pending = self._pending[:want], self._pending[want:]
        if self.source.muted:
            data = np.zeros_like(data)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME_SAMPLES
        frame.time_base = _TIME_BASE
        self._n += 1
        return frame

    def stop(self) -> None:
        self.source._outlets.discard(self._queue)
        super().stop()


async def drain(track: MediaStreamTrack) -> None:
    """Consume a track a real client publishes (media is not forwarded), so it does not pile up."""
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        pass
    except Exception:  # noqa: BLE001 - a dying PC must not log tracebacks in tests
        logger.debug("drain stopped", exc_info=True)
