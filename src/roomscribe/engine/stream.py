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
from .events import Event, EventType, Word
from .pcm import InputError, validate_pcm
from .policies import Hypothesis, count_before, make_policy
from .quality import QualityGate
from .text import CJK_LANGUAGES, character_groups, ends_sentence, join_words, tokens_per_word, tokens_to_words
from .vad import SileroVAD, VadConfig, VadStream
from .whisper import SAMPLE_RATE, DecodeRequest, DecodeResult

MAX_CONTEXT_TOKENS = 224


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


def new_segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]


@dataclass
class _CommittedWord:
    word: Word
    n_tokens: int


class _Utterance:
    """Speech between a VAD start and end: its window and what is committed in it."""

    def __init__(self, start_sample: int, policy, language: str | None):
        self.window = AudioWindow()
        self.window.clear(start_sample)
        self.policy = policy
        self.language = language
        self.prefix: list[int] = []  # committed tokens still inside the window
        self.prefix_words: list[_CommittedWord] = []
        self.decoded_len = 0  # window length at the last decode
        self.closed = False
        self.speech_samples = 0
        self.tail: list[Word] = []
        self.decodes = 0


@dataclass
class Ticket:
    """A request handed out by a stream, to be answered through `apply`."""

    request: DecodeRequest
    utterance: _Utterance
    flush: bool
    window_start: int  # stream sample of the window's first sample
    content_samples: int


class SpeechStream:
    def __init__(self, runner, vad: SileroVAD | None, config: StreamConfig | None = None,
                 stream_id: str | None = None):
        self.runner = runner
        self.config = config or StreamConfig()
        self.id = stream_id or uuid.uuid4().hex[:8]
        self._vad = VadStream(vad, self.config.vad) if vad is not None else None
        self._received = 0
        self._preroll = AudioWindow(int(SAMPLE_RATE * 1.0))
        self._active: _Utterance | None = None
        self._closing: list[_Utterance] = []
        self._in_flight = False
        self._context: list[int] = []  # committed tokens that left the window: the prompt
        self._segment_id = new_segment_id()
        self._segment_words: list[Word] = []
        self._segment_language: str | None = None
        self._detected_language: str | None = None
        self.ended = False
        self.decodes = 0

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
        utt = _Utterance(start_sample, policy, self.config.language or self._detected_language)
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
        step = int(self.config.min_chunk_seconds * SAMPLE_RATE)
        return n >= step and n - utt.decoded_len >= step

    @property
    def pending_audio_seconds(self) -> float:
        """Speech heard but not yet decoded: how far behind this stream is."""
        total = sum(len(u.window) - u.decoded_len for u in self._closing)
        if self._active is not None:
            total += len(self._active.window) - self._active.decoded_len
        return total / SAMPLE_RATE

    @property
    def idle(self) -> bool:
        return not self._in_flight and not self._closing and self._active is None

    def next_request(self) -> Ticket | None:
        if self._in_flight:
            return None
        if self._closing:
            utt, flush = self._closing[0], True
        elif self._active is not None and self.ready():
            utt, flush = self._active, False
        else:
            return None
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
        language = result.language
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
            if content >= self.config.max_window_seconds and n == 0:
                # Never let the window outgrow its bound: commit what lies well before its end.
                n = count_before(hyp, content - 1.0)
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

    # -- committing -----------------------------------------------------------
    def _word_starts(self, tokens: list[int], language: str | None) -> list[bool]:
        starts = [False] * len(tokens)
        spaced = language not in CJK_LANGUAGES
        for text, idx in character_groups(tokens, self.runner.decode_tokens):
            starts[idx[0]] = text.startswith(" ") if spaced else True
        return starts

    def _commit(self, utt: _Utterance, tokens: list[int], words: list[Word], language, emitted_at,
                events: list[Event], close: bool) -> None:
        utt.prefix.extend(tokens)
        # Attribute the committed tokens to words (for cutting the window at a word end).
        counts = tokens_per_word(tokens, self.runner.decode_tokens, language, len(words))
        utt.prefix_words.extend(_CommittedWord(w, c) for w, c in zip(words, counts))
        chunk: list[Word] = []
        for i, word in enumerate(words):
            chunk.append(word)
            nxt = words[i + 1].text if i + 1 < len(words) else None
            if ends_sentence(word.text, language, nxt):
                events.append(self._final(chunk, language, emitted_at, closes=True))
                chunk = []
        if chunk or (close and self._segment_words):
            events.append(self._final(chunk, language, emitted_at, closes=close))

    def _final(self, words: list[Word], language, emitted_at, closes: bool) -> Event:
        """A FINAL for newly committed words; a closing one ends the segment."""
        if not self._segment_words and words:
            first = words[0]
            text = first.text.lstrip()
            text = text[:1].upper() + text[1:]  # a caption starts with a capital (no-op for Hangul)
            words = [Word(text, first.start, first.end, first.probability), *words[1:]]
        self._segment_words.extend(words)
        seg = self._segment_words
        event = Event(EventType.FINAL, self._segment_id, emitted_at, text=join_words(words, language),
                      words=list(words), start=(words or seg)[0].start, end=(words or seg)[-1].end,
                      language=language, segment_final=closes, segment_text=join_words(seg, language))
        if closes:
            self._segment_id = new_segment_id()
            self._segment_words = []
        return event

    def _trim(self, utt: _Utterance, language) -> None:
        """Cut the window after the last committed sentence (or word, when it is too long)."""
        words = [cw.word for cw in utt.prefix_words]
        if not words:
            return
        window_seconds = len(utt.window) / SAMPLE_RATE
        too_long = window_seconds >= self.config.max_window_seconds - self.config.min_chunk_seconds
        # Keep some committed speech in the window: Whisper hears the next words better in context.
        keep = 0.0 if too_long else self.config.keep_context_seconds
        cut = 0
        for i in range(len(words) - 1, -1, -1):
            nxt = words[i + 1].text if i + 1 < len(words) else None
            if words[-1].end - words[i].end >= keep and ends_sentence(words[i].text, language, nxt):
                cut = i + 1
                break
        if cut == 0 and too_long:
            cut = len(words)
        if cut == 0:
            return
        cut_time = words[cut - 1].end
        if cut == len(words) and utt.tail:
            cut_time = min(cut_time, utt.tail[0].start)
        cut_sample = int(round(cut_time * SAMPLE_RATE))
        if self._vad is not None:
            # Alignment puts word ends within a frame or two; a cut inside a word makes the
            # next window start on a fragment, so move it to the quietest nearby point.
            lo = max(int((words[cut - 1].end - 0.25) * SAMPLE_RATE), int(words[cut - 1].start * SAMPLE_RATE))
            hi = int((cut_time + 0.25) * SAMPLE_RATE)
            if cut < len(words):
                hi = min(hi, int(words[cut].end * SAMPLE_RATE))
            elif utt.tail:
                hi = min(hi, int(utt.tail[0].end * SAMPLE_RATE))
            quiet = self._vad.quietest_sample(lo, hi)
            if quiet is not None and quiet[1] < self.config.vad.threshold:
                cut_sample = quiet[0]
        cut_samples = cut_sample - utt.window.start_sample
        if cut_samples <= 0:
            return
        moved = sum(cw.n_tokens for cw in utt.prefix_words[:cut])
        self._context = (self._context + utt.prefix[:moved])[-MAX_CONTEXT_TOKENS:]
        utt.prefix = utt.prefix[moved:]
        utt.prefix_words = utt.prefix_words[cut:]
        utt.window.drop_front(cut_samples)
        utt.decoded_len = max(0, utt.decoded_len - cut_samples)
