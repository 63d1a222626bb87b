"""The translation stage: each final caption, translated into its room's or session's languages.

A caption passes on at once, untranslated; its translations follow later, each as the same
final again with `translations` filled in and `translated` naming the languages the update
adds. A segment is not translated into the language it was spoken in. A revised final is
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
    ):
        self.service = service
        self.targets = targets
        self.glossary = glossary
        self._segments: OrderedDict[str, Caption] = OrderedDict()  # segment -> its latest final, translated so far
        self._context: dict[tuple[str | None, str], deque[tuple[str, str]]] = {}
        self._closed = False

    def process(self, caption: Caption, emit: Emit) -> None:
        emit(caption)
        if not caption.final or caption.translated or not caption.text.strip() or self._closed:
            return
        targets = [t for t in self.targets.languages if t != caption.language]
        if not targets:
            return
        self._segments[caption.segment_id] = caption
        self._segments.move_to_end(caption.segment_id)
        while len(self._segments) > SEGMENTS_KEPT:
            self._segments.popitem(last=False)
        glossary = tuple(self.glossary())
        for target in targets:
            context = self._context.get((caption.language, target), ())
            request = TranslationRequest(caption.text, caption.language, target, tuple(context), glossary)
            self.service.submit(
                TranslationJob(
                    key=(id(self), caption.segment_id, target),
                    request=request,
                    done=lambda text, waited, c=caption, t=target: self._translated(c, t, text, waited, emit),
                )
            )

    def _translated(self, source: Caption, target: str, text: str, waited: float, emit: Emit) -> None:
        latest = self._segments.get(source.segment_id)
        if latest is None or latest.text != source.text or self._closed:
            return  # revised since (its own translation is on the way), or long gone
        context = self._context.setdefault((source.language, target), deque(maxlen=CONTEXT_SENTENCES))
        context.append((source.text, text))
        update = dataclasses.replace(
            latest,
            translations={**latest.translations, target: text},
            translated=(target,),
            new_words=[],
            tail="",
            tail_words=[],
            lag=source.lag + waited,
        )
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
