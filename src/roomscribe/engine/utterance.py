"""A stream's pieces of state: an utterance's window and what is committed in it, the
ticket for a request in flight, and the pace the scheduler sets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio_window import AudioWindow
from .events import Word
from .segment import ClosedSegment
from .whisper import DecodeRequest


@dataclass(frozen=True)
class Pace:
    """How hard a stream is worked. When compute falls behind, the scheduler trades
    accuracy for bounded lag: a shorter window (cheaper decodes), words committed once
    they are old enough even without the policy's agreement (a final no longer waits for
    a second decode), and at last decodes further apart (fewer interims)."""

    interval_scale: float = 1.0  # x StreamConfig.min_chunk_seconds between decodes
    max_window_seconds: float | None = None  # a tighter bound than StreamConfig's
    commit_after_seconds: float | None = None  # commit words ending this long before the window end


@dataclass
class CommittedWord:
    word: Word
    n_tokens: int


@dataclass
class Utterance:
    """Speech between a VAD start and end: its window and what is committed in it."""

    policy: object
    language: str | None
    window: AudioWindow = field(default_factory=AudioWindow)
    prefix: list[int] = field(default_factory=list)  # committed tokens still inside the window
    prefix_words: list[CommittedWord] = field(default_factory=list)
    decoded_len: int = 0  # window length at the last decode
    closed: bool = False
    speech_samples: int = 0
    tail: list[Word] = field(default_factory=list)
    decodes: int = 0
    reflushes: int = 0  # flushes of a rest its flush decode did not hear

    @classmethod
    def starting_at(cls, start_sample: int, policy, language: str | None) -> Utterance:
        utt = cls(policy, language)
        utt.window.clear(start_sample)
        return utt

    @property
    def undecoded_from(self) -> int:
        """Stream sample of the first audio no decode has seen yet."""
        return self.window.start_sample + self.decoded_len


@dataclass
class Revision:
    """Finished sentences to be heard again whole: their audio (across the pauses inside
    them) after a lead-in of the speech before them, the text before that, and the caption
    segments they were first captioned as."""

    audio: np.ndarray  # the lead-in, then the sentences
    start_sample: int  # stream sample where the sentences' audio starts
    prompt: list[int]
    language: str | None
    segments: list[ClosedSegment]
    queued_at: int = 0  # stream samples received when it was queued
    prefix: list[int] = field(default_factory=list)  # the lead-in's words, forced as the text's start
    lead_samples: int = 0  # of `audio`, before the sentences

    @property
    def window_start(self) -> int:
        """The stream sample the window's clock counts from (the lead-in may be shortened:
        its own times are not on the stream clock, the sentences' are)."""
        return self.start_sample - self.lead_samples


@dataclass
class Ticket:
    """A request handed out by a stream, to be answered through `apply`."""

    request: DecodeRequest
    utterance: Utterance | None  # None for a revision
    flush: bool
    window_start: int  # stream sample of the window's first sample
    content_samples: int
    revision: Revision | None = None
