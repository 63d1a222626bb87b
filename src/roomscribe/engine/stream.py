"""One audio stream's state: VAD, the utterance window, committed text, events.

A stream holds no model. It asks for work (`next_request`) and is given the
result (`apply`), so whoever owns the model can batch work from many streams.
At most one request per stream is in flight at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from .audio_window import AudioWindow
from .committing import MAX_CONTEXT_TOKENS, Committing, new_segment_id
from .events import Event, EventType, Word
from .pcm import InputError, validate_pcm
from .policies import Hypothesis, count_before, make_policy
from .quality import QualityGate
from .text import join_words, tokens_to_words
from .utterance import Pace, Ticket, Utterance
from .vad import SileroVAD, VadConfig, VadStream
from .whisper import SAMPLE_RATE, DecodeRequest, DecodeResult


@dataclass
class StreamConfig:
    policy: str = "localagreement"
    language: str | None = None  # None: detect per stream
    task: str = "transcribe"
    min_chunk_seconds: float = 0.5  # new audio needed before the window is decoded again
    max_window_seconds: float = 12.0  # the window is cut before it grows past this
    keep_context_seconds: float = 0.0  # committed speech kept in the window after a cut
    frame_threshold: int = 25  # AlignAtt: 20 ms frames kept clear of the window end
    interim_results: bool = True
    vad: VadConfig = field(default_factory=VadConfig)
    quality: QualityGate = field(default_factory=QualityGate)

    def __post_init__(self):
        make_policy(self.policy, frame_threshold=self.frame_threshold)  # validates the name
        if self.min_chunk_seconds <= 0 or self.max_window_seconds < 2 * self.min_chunk_seconds:
            raise ValueError("need 0 < min_chunk_seconds and max_window_seconds >= 2 * min_chunk_seconds")


class SpeechStream(Committing):
    def __init__(self, runner, vad: SileroVAD | None, config: StreamConfig | None = None,
                 stream_id: str | None = None):
        self.runner = runner
        self.config = config or StreamConfig()
        self.id = stream_id or uuid.uuid4().hex[:8]
        self._vad = VadStream(vad, self.config.vad) if vad is not None else None
        self._received = 0
        self._preroll = AudioWindow(int(SAMPLE_RATE * 1.0))
        self._active: Utterance | None = None
        self._closing: list[Utterance] = []
        self._in_flight = False
        self._context: list[int] = []  # committed tokens that left the window: the prompt
        self._segment_id = new_segment_id()
        self._segment_words: list[Word] = []
        self._segment_language: str | None = None
        self._detected_language: str | None = None
        self.ended = False
        self.decodes = 0
        self.pace = Pace()
        self.shed_seconds = 0.0  # speech dropped undecoded under extreme overload

    # -- input ----------------------------------------------------------------
    @property
    def received_seconds(self) -> float:
        return self._received / SAMPLE_RATE

    def push(self, audio, sample_rate: int = SAMPLE_RATE) -> list[Event]:
        """Feed 16 kHz mono audio (float in [-1, 1] or int16). Returns speech-start events."""
        samples = validate_pcm(audio, sample_rate)
        if self.ended:
            raise InputError("stream has ended")
        if len(samples) == 0:
            return []
        events: list[Event] = []
        if self._vad is None:
            if self._active is None:
                events += self._start_utterance(self._received, self._received)
            self._active.window.append(samples)
            self._active.speech_samples += len(samples)
            self._received += len(samples)
            return events

        base = self._received
        self._received += len(samples)
        cursor = 0
        for ev in self._vad.push(samples):
            offset = min(max(ev.sample - base, cursor), len(samples))
            if ev.kind == "start":
                self._feed_preroll(samples[cursor:offset])
                events += self._start_utterance(ev.sample, base + offset)
            else:
                self._feed_active(samples[cursor:offset])
                self._close_active(ev.speech_samples)
                self._preroll.clear(base + offset)
            cursor = offset
        rest = samples[cursor:]
        if self._active is not None:
            self._feed_active(rest)
        else:
            self._feed_preroll(rest)
        return events

    def end(self) -> list[Event]:
        """No more audio: the open utterance is flushed by the next decode."""
        if self.ended:
            return []
        self.ended = True
        if self._vad is not None:
            for ev in self._vad.finish():
                self._close_active(ev.speech_samples)
        if self._active is not None:
            self._close_active(self._active.speech_samples)
        return []

    def _feed_preroll(self, audio: np.ndarray) -> None:
        self._preroll.append(audio)
        keep = int(self.config.vad.start_pad_seconds * SAMPLE_RATE) + 1024
        if len(self._preroll) > keep:
            self._preroll.drop_front(len(self._preroll) - keep)

    def _feed_active(self, audio: np.ndarray) -> None:
        if self._active is not None and len(audio):
            self._active.window.append(audio)
            self._active.speech_samples += len(audio)

    def _start_utterance(self, start_sample: int, position: int) -> list[Event]:
        """Open an utterance at `start_sample`; `position` is where the pre-roll ends."""
        policy = make_policy(self.config.policy, frame_threshold=self.config.frame_threshold)
        utt = Utterance.starting_at(start_sample, policy, self.config.language or self._detected_language)
        # Audio from just before the VAD fired (its pad) comes from the pre-roll.
        pre = self._preroll.view()
        # Never reach back before the pre-roll: that audio belongs to the previous utterance.
        skip = max(0, start_sample - self._preroll.start_sample)
        if skip <= len(pre) and self._preroll.end_sample == position:
            utt.window.clear(self._preroll.start_sample + skip)
            utt.window.append(pre[skip:])
        else:
            utt.window.clear(position)
        self._preroll.clear(position)
        self._active = utt
        return [Event(EventType.SPEECH_START, self._segment_id, self.received_seconds,
                      start=start_sample / SAMPLE_RATE)]

    def _close_active(self, speech_samples: int) -> None:
        utt = self._active
        if utt is None:
            return
        utt.closed = True
        utt.speech_samples = speech_samples
        self._active = None
        self._closing.append(utt)

    # -- work -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._in_flight

    def ready(self) -> bool:
        """Whether decoding now would be useful (VAD-silent streams never are)."""
        if self._in_flight:
            return False
        if self._closing:
            return True
        utt = self._active
        if utt is None:
            return False
        n = len(utt.window)
        step = int(self.decode_interval * SAMPLE_RATE)
        return n >= step and n - utt.decoded_len >= step

    @property
    def decode_interval(self) -> float:
        """Seconds of new speech between decodes, at the current pace."""
        return self.config.min_chunk_seconds * self.pace.interval_scale

    @property
    def max_window_seconds(self) -> float:
        bound = self.pace.max_window_seconds
        return self.config.max_window_seconds if bound is None else min(bound, self.config.max_window_seconds)

    @property
    def lag_seconds(self) -> float:
        """How long the oldest speech not yet shown in a caption has waited, on the stream
        clock: the scheduler serves the largest first."""
        pending = [u.undecoded_from for u in self._closing]
        if self._active is not None and len(self._active.window) > self._active.decoded_len:
            pending.append(self._active.undecoded_from)
        if not pending:
            return 0.0
        return max(0, self._received - min(pending)) / SAMPLE_RATE

    @property
    def idle(self) -> bool:
        return not self._in_flight and not self._closing and self._active is None

    def _next_utterance(self, early: bool = False) -> Utterance | None:
        if self._in_flight:
            return None
        if self._closing:
            return self._closing[0]
        if self._active is not None and (self.ready() or (early and self.can_ride(0.0))):
            return self._active
        return None

    def can_ride(self, share: float = 0.5) -> bool:
        """Whether a decode before the stream's due time is worth a seat in a batch: it
        has `share` of a decode interval's new speech."""
        utt = self._active
        if self._in_flight or utt is None:
            return False
        step = int(self.decode_interval * SAMPLE_RATE)
        return len(utt.window) >= step and len(utt.window) - utt.decoded_len >= share * step

    def request_shape(self, runner, early: bool = False) -> tuple[int, int] | None:
        """The batch shape (`runner.shape`) of the request `next_request` would make."""
        utt = self._next_utterance(early)
        if utt is None:
            return None
        return runner.shape(len(utt.window), len(self._context))

    def next_request(self, early: bool = False) -> Ticket | None:
        """The next window to decode; `early`: also one that is not due yet (a rider)."""
        utt = self._next_utterance(early)
        if utt is None:
            return None
        flush = bool(self._closing)
        self._shed_excess(utt)
        audio = utt.window.copy()
        request = DecodeRequest(audio=audio, language=utt.language, task=self.config.task,
                                prompt=self._context[-MAX_CONTEXT_TOKENS:], prefix=list(utt.prefix))
        utt.decoded_len = len(audio)
        self._in_flight = True
        return Ticket(request, utt, flush, utt.window.start_sample, len(audio))

    def cancel(self, ticket: Ticket) -> None:
        """The request was not served (error, shutdown): the stream may ask again."""
        self._in_flight = False
        ticket.utterance.decoded_len = 0

    def discard_pending(self) -> None:
        """Drop closing utterances without decoding them (used after repeated failures)."""
        self._closing.clear()
        self._in_flight = False

    def apply(self, ticket: Ticket, result: DecodeResult, now: float | None = None) -> list[Event]:
        """Take a decode result; returns the caption events it produces."""
        self._in_flight = False
        self.decodes += 1
        utt = ticket.utterance
        utt.decodes += 1
        emitted_at = self.received_seconds if now is None else now
        if self.config.language is None and ticket.request.language is None:
            # Detection on a second of audio is often wrong: a language becomes the stream's
            # own only when heard confidently on a longer window; until then, each decode detects.
            if ticket.content_samples >= 2 * SAMPLE_RATE and result.language_probability >= 0.8:
                self._detected_language = result.language
                utt.language = result.language
        # Whisper translates into English whatever it hears: the caption's words are English.
        language = "en" if self.config.task == "translate" else result.language
        offset = ticket.window_start / SAMPLE_RATE
        content = ticket.content_samples / SAMPLE_RATE
        tokens = self.config.quality.accept(result, self.runner, utt.prefix)
        starts = result.token_starts[len(result.prefix):]
        ends = result.token_ends[len(result.prefix):]
        probs = result.token_probs[len(result.prefix):]
        hyp = Hypothesis(tokens=tokens, token_ends=ends[: len(tokens)],
                         word_starts=self._word_starts(tokens, language), content_seconds=content,
                         token_probs=probs[: len(tokens)])

        if ticket.flush:
            n = len(tokens)
        else:
            n = utt.policy.commit_count(hyp)
            if content >= self.max_window_seconds:
                # Never let the window outgrow its bound: commit what lies well before its end.
                n = max(n, count_before(hyp, content - 1.0))
            if self.pace.commit_after_seconds is not None:  # behind: no waiting for agreement
                n = max(n, count_before(hyp, content - self.pace.commit_after_seconds))
        events: list[Event] = []
        committed: list[Word] = []
        if n:
            committed = tokens_to_words(tokens[:n], starts[:n], ends[:n], probs[:n],
                                        self.runner.decode_tokens, language, offset)
            utt.policy.committed(n)
        utt.tail = tokens_to_words(tokens[n:], starts[n:], ends[n:], probs[n:],
                                   self.runner.decode_tokens, language, offset)
        if n or ticket.flush:
            self._commit(utt, tokens[:n], committed, language, emitted_at, events, close=ticket.flush)

        if ticket.flush:
            self._closing.remove(utt)
            self._context = (self._context + utt.prefix)[-MAX_CONTEXT_TOKENS:]
            events.append(Event(EventType.SPEECH_END, self._segment_id, emitted_at,
                                start=offset, end=(ticket.window_start + ticket.content_samples) / SAMPLE_RATE))
            return events

        self._trim(utt, language)
        if self.config.interim_results and utt.tail:
            events.append(Event(
                EventType.INTERIM, self._segment_id, emitted_at, text=join_words(utt.tail, language),
                words=list(utt.tail), start=utt.tail[0].start, end=utt.tail[-1].end, language=language,
                segment_text=join_words(self._segment_words + utt.tail, language)))
        return events
