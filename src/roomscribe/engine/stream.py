"""One audio stream: its VAD, utterance windows, decode requests and the prompt context.

Committed words go to its `Segment`, which owns the caption text and its FINALs.

A stream holds no model. It asks for work (`next_request`) and is given the
result (`apply`), so whoever owns the model can batch work from many streams.
At most one request per stream is in flight at a time.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .audio_window import AudioWindow
from .events import Event, EventType, Word
from .hearing import SecondHearings
from .pcm import InputError, validate_pcm
from .policies import Hypothesis, count_before, make_policy
from .quality import ECHO_WORDS, UNHEARD_MARGIN_SECONDS, UNHEARD_SPEECH_SECONDS, QualityGate, squeezed_last_word
from .segment import Segment
from .speakers import SpeakerHints, TrackSpeakers
from .text import (
    CJK_LANGUAGES,
    character_groups,
    ends_sentence,
    join_words,
    tokens_per_word,
    tokens_to_words,
)
from .utterance import CommittedWord, Pace, Revision, Ticket, Utterance
from .vad import SileroVAD, VadConfig, VadStream
from .whisper import MAX_CONTEXT_TOKENS, SAMPLE_RATE, DecodeRequest, DecodeResult

MAX_PROMPT_CHARACTERS = 500
# A second hearing waits behind the live window at most this long (stream seconds): on a
# busy stream the live window is always due, and a revision that comes minutes late is useless.
REVISION_WAIT_SECONDS = 1.0
MAX_PINNED_TOKENS = 64  # of a stream's prompt: the rest of the context is its own earlier text
# The encoder takes at most 30 s (with padding): a window that would pass this only under
# extreme overload sheds its oldest audio rather than be cut silently by the encoder.
HARD_WINDOW_SECONDS = 28.0
MAX_REFLUSHES = 3  # flush decodes of the rest of one utterance that its flush did not hear


@dataclass
class StreamConfig:
    policy: str = "localagreement"
    language: str | None = None  # None: detect per stream
    task: str = "transcribe"
    min_chunk_seconds: float = 0.5  # new audio needed before the window is decoded again
    max_window_seconds: float = 12.0  # the window is cut before it grows past this
    # A window shorter than this commits nothing: on a second of audio Whisper often mishears
    # the first words ("This is the" as "The"), and once committed they cannot be heard again.
    first_commit_seconds: float = 1.5
    keep_context_seconds: float = 0.0  # committed speech kept in the window after a cut
    frame_threshold: int = 25  # AlignAtt: 20 ms frames kept clear of the window end
    interim_results: bool = True
    # Words to expect (names, jargon) or a sentence of context: kept at the head of the
    # decoder's context on every decode, never captioned by itself.
    prompt: str = ""
    # Hear finished sentences once more, whole across the pauses inside them, a few together
    # and with the text before them, and send a revised FINAL for each segment that hearing
    # hears differently. Off by itself while the scheduler is slowed down; off for listeners
    # that cannot replace a final.
    revise_finals: bool = True
    # Who said what on a track that carries several voices: every word gets a speaker and a
    # change of voice closes the caption. Needs the diarization extra; the hints bound the count.
    diarize: bool = False
    speakers: SpeakerHints = field(default_factory=SpeakerHints)
    vad: VadConfig = field(default_factory=VadConfig)
    quality: QualityGate = field(default_factory=QualityGate)

    def __post_init__(self):
        make_policy(self.policy, frame_threshold=self.frame_threshold)  # validates the name
        if self.min_chunk_seconds <= 0 or self.max_window_seconds < 2 * self.min_chunk_seconds:
            raise ValueError("need 0 < min_chunk_seconds and max_window_seconds >= 2 * min_chunk_seconds")
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT_CHARACTERS:
            raise ValueError(f"prompt must be text of at most {MAX_PROMPT_CHARACTERS} characters")


class SpeechStream:
    def __init__(self, runner, vad: SileroVAD | None, config: StreamConfig | None = None, stream_id: str | None = None):
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
        self._said: deque[Word] = deque(maxlen=ECHO_WORDS)  # the last committed words
        self._pinned: list[int] = self._prompt_tokens(self.config.prompt)
        self._segment = Segment()
        self._hearings = SecondHearings(self.runner.encode_text, self._vad)
        self._detected_language: str | None = None
        self.speakers: TrackSpeakers | None = None  # set by the engine for a diarized stream
        self.ended = False
        self.decodes = 0
        self.second_hearings = 0
        self.pace = Pace()
        self.shed_seconds = 0.0  # speech dropped undecoded under extreme overload

    def _prompt_tokens(self, prompt: str) -> list[int]:
        prompt = prompt.strip()
        return self.runner.encode_text(" " + prompt)[:MAX_PINNED_TOKENS] if prompt else []

    def set_prompt(self, prompt: str) -> None:
        """New words to expect, from the next decode on."""
        config = dataclasses.replace(self.config, prompt=prompt)  # validates
        self._pinned = self._prompt_tokens(prompt)
        self.config = config

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
        self._remember(samples)
        events: list[Event] = []
        if self._vad is None:
            if self._active is None:
                events += self._start_utterance(self._received, self._received)
            self._active.window.append(samples)
            self._active.speech_samples += len(samples)
            if self.speakers is not None:
                self.speakers.speech(self._received, samples)
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

    def _remember(self, samples: np.ndarray) -> None:
        if not self.config.revise_finals:
            return
        self._hearings.remember(samples)
        if self._segment.closed and self._active is None and not self._closing:
            self._gather_sentences()  # a sentence the speaker left unfinished

    def _feed_preroll(self, audio: np.ndarray) -> None:
        self._preroll.append(audio)
        keep = int(self.config.vad.start_pad_seconds * SAMPLE_RATE) + 1024
        if len(self._preroll) > keep:
            self._preroll.drop_front(len(self._preroll) - keep)

    def _feed_active(self, audio: np.ndarray) -> None:
        if self._active is not None and len(audio):
            self._active.window.append(audio)
            self._active.speech_samples += len(audio)
            if self.speakers is not None:
                self.speakers.speech(self._active.window.end_sample - len(audio), audio)

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
        if self.speakers is not None and len(utt.window):
            self.speakers.speech(utt.window.start_sample, utt.window.view())
        self._active = utt
        return [
            Event(EventType.SPEECH_START, self._segment.id, self.received_seconds, start=start_sample / SAMPLE_RATE)
        ]

    def _close_active(self, speech_samples: int) -> None:
        utt = self._active
        if utt is None:
            return
        utt.closed = True
        utt.speech_samples = speech_samples
        self._active = None
        if self.speakers is not None:
            self.speakers.pause()
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
        return self._window_due() or self._revision_due() is not None

    def _window_due(self) -> bool:
        """The active window has a decode interval's new speech."""
        utt = self._active
        if utt is None:
            return False
        n = len(utt.window)
        step = int(self.decode_interval * SAMPLE_RATE)
        return n >= step and n - utt.decoded_len >= step

    @property
    def revising(self) -> bool:
        """Second hearings are wanted now: asked for, and the scheduler is not slowed down."""
        return self.config.revise_finals and self.pace == Pace()

    def _revision_due(self) -> Revision | None:
        queue = self._hearings.queue
        if queue and not self.revising:
            queue.clear()  # behind: the first hearing stands
        return queue[0] if queue else None

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
        return not self._in_flight and not self._closing and self._active is None and not self._hearings.queue

    def _next_utterance(self, early: bool = False) -> Utterance | None:
        if self._in_flight:
            return None
        if self._closing:
            return self._closing[0]
        revision = self._revision_due()
        if revision is not None and self._received - revision.queued_at >= REVISION_WAIT_SECONDS * SAMPLE_RATE:
            return None  # its turn: `next_request` hands it out
        if self._active is not None and self._window_due():
            return self._active
        if revision is not None:
            return None  # the window is not due: the second hearing fills the gap
        if self._active is not None and early and self.can_ride(0.0):
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
        if utt is not None:
            return runner.shape(len(utt.window), len(self._context), len(self._pinned))
        revision = None if self._in_flight else self._revision_due()
        if revision is None:
            return None
        return runner.shape(len(revision.audio), len(revision.prompt), len(self._pinned))

    def next_request(self, early: bool = False) -> Ticket | None:
        """The next window to decode; `early`: also one that is not due yet (a rider)."""
        utt = self._next_utterance(early)
        if utt is None:
            return self._next_revision()
        flush = bool(self._closing)
        self._shed_excess(utt)
        audio = utt.window.copy()
        request = DecodeRequest(
            audio=audio,
            language=utt.language,
            task=self.config.task,
            prompt=self._context[-MAX_CONTEXT_TOKENS:],
            pinned=self._pinned,
            prefix=list(utt.prefix),
        )
        utt.decoded_len = len(audio)
        self._in_flight = True
        return Ticket(request, utt, flush, utt.window.start_sample, len(audio))

    def _next_revision(self) -> Ticket | None:
        revision = None if self._in_flight else self._revision_due()
        if revision is None:
            return None
        self._hearings.queue.popleft()
        self._in_flight = True
        request = DecodeRequest(
            audio=revision.audio,
            language=revision.language,
            task=self.config.task,
            prompt=revision.prompt,
            pinned=self._pinned,
            prefix=revision.prefix,
        )
        return Ticket(request, None, False, revision.window_start, len(revision.audio), revision)

    def cancel(self, ticket: Ticket) -> None:
        """The request was not served (error, shutdown): the stream may ask again (a
        revision is not asked again: the first hearing stands)."""
        self._in_flight = False
        if ticket.utterance is not None:
            ticket.utterance.decoded_len = 0

    def discard_pending(self) -> None:
        """Drop closing utterances without decoding them (used after repeated failures)."""
        self._closing.clear()
        self._hearings.queue.clear()
        self._in_flight = False

    def apply(self, ticket: Ticket, result: DecodeResult, now: float | None = None) -> list[Event]:
        """Take a decode result; returns the caption events it produces."""
        self._in_flight = False
        self.decodes += 1
        emitted_at = self.received_seconds if now is None else now
        # Whisper translates into English whatever it hears: the caption's words are English.
        language = "en" if self.config.task == "translate" else result.language
        if ticket.revision is not None:
            self.second_hearings += 1
            kept = self.config.quality.accept(result, self.runner, ticket.revision.prefix)
            offset = ticket.window_start / SAMPLE_RATE
            words = tokens_to_words(*result.generated(kept), self.runner.decode_tokens, language, offset)
            return self._hearings.revised_finals(ticket.revision, words, language, emitted_at)
        utt = ticket.utterance
        utt.decodes += 1
        if self.config.language is None and ticket.request.language is None:
            # Detection on a second of audio is often wrong: a language becomes the stream's
            # own only when heard confidently on a longer window; until then, each decode detects.
            if ticket.content_samples >= 2 * SAMPLE_RATE and result.language_probability >= 0.8:
                self._detected_language = result.language
                utt.language = result.language
        offset = ticket.window_start / SAMPLE_RATE
        content = ticket.content_samples / SAMPLE_RATE
        kept = self.config.quality.accept(result, self.runner, utt.prefix, self._said, offset)
        tokens, starts, ends, probs = result.generated(kept)
        hyp = Hypothesis(
            tokens=tokens,
            token_ends=ends[: len(tokens)],
            word_starts=self._word_starts(tokens, language),
            content_seconds=content,
            token_probs=probs[: len(tokens)],
        )

        # Speech the decoder did not hear: what it said is committed and the window cut after
        # it, so that the rest is heard without it as prefix.
        unheard = (
            ticket.flush or content >= self.config.first_commit_seconds + UNHEARD_SPEECH_SECONDS
        ) and self._unheard_after(utt, offset + ends[len(tokens) - 1] if tokens else None, ticket)
        if ticket.flush or unheard:
            n = len(tokens)
            if unheard and (not ticket.flush or utt.reflushes < MAX_REFLUSHES):
                # A last word aligned in an instant has its audio after the cut: heard again.
                held = squeezed_last_word(tokens, starts, ends, self.runner.decode_tokens)
                n -= held if held < n else 0
        elif not utt.prefix and content < self.config.first_commit_seconds:
            n = 0
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
            committed = tokens_to_words(
                tokens[:n], starts[:n], ends[:n], probs[:n], self.runner.decode_tokens, language, offset
            )
            utt.policy.committed(n)
            self._said.extend(committed)
            self._label(committed)
        utt.tail = tokens_to_words(
            tokens[n:], starts[n:], ends[n:], probs[n:], self.runner.decode_tokens, language, offset
        )
        reflush = ticket.flush and unheard and utt.reflushes < MAX_REFLUSHES
        if n or ticket.flush:
            self._extend_prefix(utt, tokens[:n], committed, language)
            events += self._segment.commit(committed, language, emitted_at, close=ticket.flush and not reflush)
        if unheard and (reflush or not ticket.flush):
            self._trim(utt, language, all_committed=True)
        if reflush:
            utt.reflushes += 1  # the rest of its window is decoded again, as a flush
            return events

        if ticket.flush:
            self._closing.remove(utt)
            self._gather_sentences()
            self._context = (self._context + utt.prefix)[-MAX_CONTEXT_TOKENS:]
            events.append(
                Event(
                    EventType.SPEECH_END,
                    self._segment.id,
                    emitted_at,
                    start=offset,
                    end=(ticket.window_start + ticket.content_samples) / SAMPLE_RATE,
                )
            )
            return events

        self._gather_sentences()
        if not unheard:
            self._trim(utt, language)
        if self.config.interim_results and utt.tail:
            self._label(utt.tail, provisional=True)
            self._segment.shown = True
            events.append(
                Event(
                    EventType.INTERIM,
                    self._segment.id,
                    emitted_at,
                    text=join_words(utt.tail, language),
                    words=list(utt.tail),
                    start=utt.tail[0].start,
                    end=utt.tail[-1].end,
                    language=language,
                    segment_text=self._segment.text_with(utt.tail, language),
                    speaker=utt.tail[0].speaker,
                )
            )
        return events

    # -- committed tokens and window cuts ---------------------------------------
    def _label(self, words: list[Word], provisional: bool = False) -> None:
        """Who said each word. Final words wait for the embeddings that cover them; an
        interim's take the speaker known so far."""
        if self.speakers is None or not words:
            return
        if not provisional or not self.speakers.has_labels:
            self.speakers.catch_up(words[-1].end)
        for w in words:
            w.speaker = self.speakers.speaker_at(w.start, w.end)

    def _word_starts(self, tokens: list[int], language: str | None) -> list[bool]:
        starts = [False] * len(tokens)
        spaced = language not in CJK_LANGUAGES
        for text, idx in character_groups(tokens, self.runner.decode_tokens):
            starts[idx[0]] = text.startswith(" ") if spaced else True
        return starts

    def _extend_prefix(self, utt: Utterance, tokens: list[int], words: list[Word], language) -> None:
        """Move committed tokens into the utterance's decoder prefix."""
        utt.prefix.extend(tokens)
        # Attribute the committed tokens to words (for cutting the window at a word end).
        counts = tokens_per_word(tokens, self.runner.decode_tokens, language, len(words))
        utt.prefix_words.extend(CommittedWord(w, c) for w, c in zip(words, counts))

    def _unheard_after(self, utt: Utterance, last_end: float | None, ticket: Ticket) -> bool:
        """Whether the window holds speech the decoder did not hear: speech after the last
        word decoded (`last_end`, or the last committed one's; stream seconds)."""
        if last_end is None:
            last_end = utt.prefix_words[-1].word.end if utt.prefix_words else None
        if self._vad is None or last_end is None:
            return False
        lo = int((last_end + UNHEARD_MARGIN_SECONDS) * SAMPLE_RATE)
        speech = self._vad.speech_seconds(lo, ticket.window_start + ticket.content_samples)
        return speech >= UNHEARD_SPEECH_SECONDS

    def _trim(self, utt: Utterance, language, all_committed: bool = False) -> None:
        """Cut the window after the last committed sentence (or word, when it is too long;
        after every committed word with `all_committed`)."""
        words = [cw.word for cw in utt.prefix_words]
        if not words:
            return
        window_seconds = len(utt.window) / SAMPLE_RATE
        too_long = window_seconds >= self.max_window_seconds - self.decode_interval
        if all_committed:
            utt.tail = []
        # Keep some committed speech in the window: Whisper hears the next words better in context.
        keep = 0.0 if too_long else self.config.keep_context_seconds
        cut = 0
        for i in range(len(words) - 1, -1, -1):
            nxt = words[i + 1].text if i + 1 < len(words) else None
            if words[-1].end - words[i].end >= keep and ends_sentence(words[i].text, language, nxt):
                cut = i + 1
                break
        if all_committed:
            cut = len(words)
        elif cut == 0 and too_long:
            # Mid-sentence: the last committed word stays in the window (its tokens in the
            # prefix), so the next window does not open on a sliver of it that the decoder
            # would hear as a word of its own ("purpose, | may" heard as "Plus, may").
            cut = len(words) - 1 if len(words) > 1 else len(words)
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
            cut_sample = self._vad.quiet_point(lo, hi, cut_sample)
        cut_samples = cut_sample - utt.window.start_sample
        if cut_samples <= 0:
            return
        moved = sum(cw.n_tokens for cw in utt.prefix_words[:cut])
        self._context = (self._context + utt.prefix[:moved])[-MAX_CONTEXT_TOKENS:]
        utt.prefix = utt.prefix[moved:]
        utt.prefix_words = utt.prefix_words[cut:]
        utt.window.drop_front(cut_samples)
        utt.decoded_len = max(0, utt.decoded_len - cut_samples)

    # -- second hearings --------------------------------------------------------
    def _gather_sentences(self) -> None:
        closed = self._segment.closed
        if not self.revising:
            closed.clear()  # behind: the first hearing stands
            return
        self._hearings.gather(
            closed,
            speaking=self._active is not None or bool(self._closing),
            ended=self.ended,
            now=self.received_seconds,
            received=self._received,
            language=self.config.language or self._detected_language,
            next_start=self._segment.start,
        )

    def _shed_excess(self, utt: Utterance) -> None:
        """Keep the window inside what the encoder takes. Only a stream left undecoded for
        many seconds gets here; its committed text is kept (as context), its oldest
        uncommitted audio is dropped and counted."""
        excess = len(utt.window) - int(HARD_WINDOW_SECONDS * SAMPLE_RATE)
        if excess <= 0:
            return
        drop = excess + int(self.max_window_seconds * SAMPLE_RATE)
        drop = min(drop, len(utt.window) - int(self.decode_interval * SAMPLE_RATE))
        self._context = (self._context + utt.prefix)[-MAX_CONTEXT_TOKENS:]
        utt.prefix, utt.prefix_words, utt.tail = [], [], []
        utt.policy.reset()
        utt.window.drop_front(drop)
        utt.decoded_len = 0
        self.shed_seconds += drop / SAMPLE_RATE
