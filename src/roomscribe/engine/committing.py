"""How a stream turns decoded tokens into committed words, finals and window cuts.

Part of `SpeechStream` (a mixin over its state), kept apart so that each file says one thing.
"""

from __future__ import annotations

import uuid

from .events import Event, EventType, Word
from .text import CJK_LANGUAGES, character_groups, ends_sentence, join_words, tokens_per_word
from .utterance import CommittedWord, Utterance
from .whisper import SAMPLE_RATE

MAX_CONTEXT_TOKENS = 224
# The encoder takes at most 30 s (with padding): a window that would pass this only under
# extreme overload sheds its oldest audio rather than be cut silently by the encoder.
HARD_WINDOW_SECONDS = 28.0


def new_segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]


class Committing:
    def _word_starts(self, tokens: list[int], language: str | None) -> list[bool]:
        starts = [False] * len(tokens)
        spaced = language not in CJK_LANGUAGES
        for text, idx in character_groups(tokens, self.runner.decode_tokens):
            starts[idx[0]] = text.startswith(" ") if spaced else True
        return starts

    def _commit(self, utt: Utterance, tokens: list[int], words: list[Word], language, emitted_at,
                events: list[Event], close: bool) -> None:
        utt.prefix.extend(tokens)
        # Attribute the committed tokens to words (for cutting the window at a word end).
        counts = tokens_per_word(tokens, self.runner.decode_tokens, language, len(words))
        utt.prefix_words.extend(CommittedWord(w, c) for w, c in zip(words, counts))
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

    def _trim(self, utt: Utterance, language) -> None:
        """Cut the window after the last committed sentence (or word, when it is too long)."""
        words = [cw.word for cw in utt.prefix_words]
        if not words:
            return
        window_seconds = len(utt.window) / SAMPLE_RATE
        too_long = window_seconds >= self.max_window_seconds - self.decode_interval
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

