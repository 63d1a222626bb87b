"""The translation stage: each final caption, translated into its room's or session's languages.

A caption passes on at once, untranslated; its translations follow later, each as the same
final again with `translations` filled in and `translated` naming the languages the update
adds. While a long sentence goes on, each stable clause of its committed words is translated
provisionally (a non-final update, queued after every final and dropped first under load).
A segment is not translated into the language it was spoken in. A revised final is
translated again and its translation replaces the first one; a translation that arrives for
text a revision has already replaced is dropped. The speaker's previous sentences and the
room's names go with each request (`translation.prompts`).

A backend that translates speech rather than text (`needs_audio`: `whisper`) gets each final's
audio with its request, cut by the door's `audio_of` (a live speaker's recent audio, or a
file's) with a margin either side, and no provisional work: a clause of an open sentence has
no clean edges in the audio. Languages a backend cannot translate into (`targets`) are refused
where a room or session sets them.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

import numpy as np

from ..audio import SAMPLE_RATE
from ..translation import refused_targets
from ..translation.prompts import TranslationRequest
from ..translation.service import TranslationJob, TranslationService
from .caption import Caption
from .control import ControlError, parse_translation_languages
from .pipeline import Emit, Stage

CONTEXT_SENTENCES = 2
CLAUSE_WORDS = 8  # a long sentence's committed words are translated provisionally every clause of this many
CLAUSE_ENDS = frozenset(",;:，、")
SEGMENTS_KEPT = 64  # closed segments remembered, for revisions and late translations
# Seconds of audio either side of a caption's span sent to a backend that hears it: word
# timings are approximate, and a clipped first or last syllable changes the translation.
CAPTION_AUDIO_MARGIN = 0.2

AudioOf = Callable[[Caption], np.ndarray | None]  # a caption's audio (None: not kept, or none)


def audio_span(audio: np.ndarray, start: float, end: float, margin: float = CAPTION_AUDIO_MARGIN) -> np.ndarray | None:
    """The samples of 16 kHz `audio` from `start` to `end` seconds, `margin` wider either side
    (None where that is no audio at all)."""
    first = max(0, round((start - margin) * SAMPLE_RATE))
    last = min(len(audio), round((end + margin) * SAMPLE_RATE))
    return audio[first:last] if last > first else None


class TranslationTargets:
    """The languages a room or session translates into; shared by its speakers' stages, so a
    change applies to every one of them at once."""

    def __init__(self, languages: Iterable[object] | str = ()):
        self.languages: tuple[str, ...] = ()
        self.set(languages)

    def set(self, languages: Iterable[object] | str) -> None:
        """Parse and set the languages (a `ControlError`, a ValueError, names a wrong one, or
        says why the process's translator cannot translate into it)."""
        if not isinstance(languages, str):
            languages = list(languages)
        parsed = parse_translation_languages(languages)
        refused = refused_targets(parsed)
        if refused:
            raise ControlError(refused)
        self.languages = parsed

    def __bool__(self) -> bool:
        return bool(self.languages)


class TranslationStage(Stage):
    def __init__(
        self,
        service: TranslationService,
        targets: TranslationTargets,
        glossary: Callable[[], tuple[str, ...]] = tuple,
        provisional: bool = True,
        audio_of: AudioOf | None = None,
    ):
        self.service = service
        self.targets = targets
        self.glossary = glossary
        self.provisional = provisional  # translate the stable clauses of a long sentence before it ends
        self.audio_of = audio_of  # a caption's audio, for a backend that hears it (the door's)
        self._segments: OrderedDict[str, Caption] = OrderedDict()  # segment -> its latest final, translated so far
        self._clauses: dict[str, int] = {}  # open segment -> committed words already sent provisionally
        self._context: dict[tuple[str | None, str], deque[tuple[str, str]]] = {}
        self._closed = False

    @property
    def needs_audio(self) -> bool:
        """Whether the backend hears captions rather than reads them (its requests carry audio)."""
        return bool(getattr(self.service.translator, "needs_audio", False))

    def process(self, caption: Caption, emit: Emit) -> None:
        emit(caption)
        if caption.final and not caption.text.strip() and caption.segment_id in self._segments:
            # Retracted by a second hearing: a late translation of it is dropped, and those
            # shown already are retracted with it (each an empty translation).
            shown = self._segments[caption.segment_id].translations
            self._segments[caption.segment_id] = caption
            if shown:
                emit(dataclasses.replace(caption, translations=dict.fromkeys(shown, ""), translated=tuple(shown)))
        if caption.translated or not caption.text.strip() or self._closed:
            return
        targets = [t for t in self.targets.languages if t != caption.language]
        if not targets:
            return
        if not caption.final:
            if self.provisional and not self.needs_audio and self._new_clause(caption):
                self._submit(caption, targets, emit, provisional=True)
            return
        self._clauses.pop(caption.segment_id, None)
        self._segments[caption.segment_id] = caption
        self._segments.move_to_end(caption.segment_id)
        while len(self._segments) > SEGMENTS_KEPT:
            self._segments.popitem(last=False)
        self._submit(caption, targets, emit, provisional=False)

    def _new_clause(self, caption: Caption) -> bool:
        """Whether an open segment's committed words end a clause of a long sentence that was
        not sent yet: a provisional translation shows while the speaker goes on."""
        words = len(caption.words) if caption.words else len(caption.text.split())
        sent = self._clauses.get(caption.segment_id, 0)
        ends_clause = caption.text.rstrip()[-1:] in CLAUSE_ENDS
        if words - sent >= CLAUSE_WORDS and (ends_clause or words - sent >= 2 * CLAUSE_WORDS):
            self._clauses[caption.segment_id] = words
            while len(self._clauses) > SEGMENTS_KEPT:
                self._clauses.pop(next(iter(self._clauses)))
            return True
        return False

    def _submit(self, caption: Caption, targets: list[str], emit: Emit, provisional: bool) -> None:
        glossary = tuple(self.glossary())
        # Without it, the backend's error says the door gives no audio.
        audio = self.audio_of(caption) if self.needs_audio and self.audio_of is not None else None
        for target in targets:
            context = self._context.get((caption.language, target), ())
            request = TranslationRequest(caption.text, caption.language, target, tuple(context), glossary, audio)
            self.service.submit(
                TranslationJob(
                    # One key per segment and language: the final replaces a provisional job still queued.
                    key=(id(self), caption.segment_id, target),
                    request=request,
                    done=lambda text, waited, c=caption, t=target: self._translated(c, t, text, waited, emit),
                    provisional=provisional,
                )
            )

    def _translated(self, source: Caption, target: str, text: str, waited: float, emit: Emit) -> None:
        if self._closed:
            return
        update_of = dict(new_words=[], tail="", tail_words=[], translated=(target,), lag=source.lag + waited)
        if not source.final:
            if source.segment_id in self._segments or source.segment_id not in self._clauses:
                return  # the segment ended meanwhile: its final's translation replaces this one
            emit(dataclasses.replace(source, translations={target: text}, **update_of))
            return
        latest = self._segments.get(source.segment_id)
        if latest is None or latest.text != source.text:
            return  # revised since (its own translation is on the way), or long gone
        context = self._context.setdefault((source.language, target), deque(maxlen=CONTEXT_SENTENCES))
        context.append((source.text, text))
        update = dataclasses.replace(latest, translations={**latest.translations, target: text}, **update_of)
        self._segments[source.segment_id] = dataclasses.replace(update, translated=())
        emit(update)

    def close(self) -> None:
        """The speaker is gone: queued translations of it are dropped, late ones ignored."""
        self._closed = True
        self.service.cancel(lambda key: isinstance(key, tuple) and key[0] == id(self))


async def translate_captions(
    service: TranslationService,
    captions: list[Caption],
    targets: TranslationTargets,
    glossary: tuple[str, ...] = (),
    timeout: float = 600.0,
    audio: np.ndarray | None = None,
) -> None:
    """Fill `translations` of finished captions (a file's segments) in place, in order, each
    with the sentences before it as context, through the process's queue. A segment whose
    translation failed keeps what it has; `service.status()` says why. `audio`: the file's
    16 kHz audio, which a backend that hears captions gets each segment's span of."""
    audio_of = None if audio is None else (lambda caption: audio_span(audio, caption.start, caption.end))
    stage = TranslationStage(service, targets, lambda: glossary, audio_of=audio_of)
    by_segment = {c.segment_id: c for c in captions}

    def keep(caption: Caption) -> None:
        if caption.translated:
            by_segment[caption.segment_id].translations.update(caption.translations)

    for caption in captions:
        if caption.final and caption.text.strip():
            stage.process(dataclasses.replace(caption, translations={}), keep)
            # One at a time: each sentence's translation is the next one's context.
            await service.drain(timeout)
