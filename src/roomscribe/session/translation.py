"""The translation stage: each final caption, translated into its room's or session's languages.

A caption passes on at once, untranslated; its translations follow later, each as the same
final again with `translations` filled in and `translated` naming the languages the update
adds. While a long sentence goes on, each stable clause of its committed words is translated
provisionally (a non-final update, queued after every final and dropped first under load).
A segment is not translated into the language it was spoken in. A revised final is
translated again and its translation replaces the first one; a translation that arrives for
text a revision has already replaced is dropped. The speaker's previous sentences and the
room's names go with each request (`translation.prompts`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from ..translation.prompts import TranslationRequest
from ..translation.service import TranslationJob, TranslationService
from .caption import Caption
from .control import parse_translation_languages
from .pipeline import Emit, Stage

CONTEXT_SENTENCES = 2
CLAUSE_WORDS = 8  # a long sentence's committed words are translated provisionally every clause of this many
CLAUSE_ENDS = frozenset(",;:，、")
SEGMENTS_KEPT = 64  # closed segments remembered, for revisions and late translations


class TranslationTargets:
    """The languages a room or session translates into; shared by its speakers' stages, so a
    change applies to every one of them at once."""

    def __init__(self, languages: Iterable[object] | str = ()):
        self.languages: tuple[str, ...] = ()
        self.set(languages)

    def set(self, languages: Iterable[object] | str) -> None:
        """Parse and set the languages (a `ControlError`, a ValueError, names a wrong one)."""
        if not isinstance(languages, str):
            languages = list(languages)
        self.languages = parse_translation_languages(languages)

    def __bool__(self) -> bool:
        return bool(self.languages)


class TranslationStage(Stage):
    def __init__(
        self,
        service: TranslationService,
        targets: TranslationTargets,
        glossary: Callable[[], tuple[str, ...]] = tuple,
        provisional: bool = True,
    ):
        self.service = service
        self.targets = targets
        self.glossary = glossary
        self.provisional = provisional  # translate the stable clauses of a long sentence before it ends
        self._segments: OrderedDict[str, Caption] = OrderedDict()  # segment -> its latest final, translated so far
        self._clauses: dict[str, int] = {}  # open segment -> committed words already sent provisionally
        self._context: dict[tuple[str | None, str], deque[tuple[str, str]]] = {}
        self._closed = False

    def process(self, caption: Caption, emit: Emit) -> None:
        emit(caption)
        if caption.translated or not caption.text.strip() or self._closed:
            return
        targets = [t for t in self.targets.languages if t != caption.language]
        if not targets:
            return
        if not caption.final:
            if self.provisional and self._new_clause(caption):
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
        for target in targets:
            context = self._context.get((caption.language, target), ())
            request = TranslationRequest(caption.text, caption.language, target, tuple(context), glossary)
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
) -> None:
    """Fill `translations` of finished captions (a file's segments) in place, in order, each
    with the sentences before it as context, through the process's queue. A segment whose
    translation failed keeps what it has; `service.status()` says why."""
    stage = TranslationStage(service, targets, lambda: glossary)
    by_segment = {c.segment_id: c for c in captions}

    def keep(caption: Caption) -> None:
        if caption.translated:
            by_segment[caption.segment_id].translations.update(caption.translations)

    for caption in captions:
        if caption.final and caption.text.strip():
            stage.process(dataclasses.replace(caption, translations={}), keep)
            # One at a time: each sentence's translation is the next one's context.
            await service.drain(timeout)
