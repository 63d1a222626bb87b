"""The terminal as a caption sink: captions shown as they would appear live.

On a terminal the interim tail updates in place and finals are appended; with
--format json every update is one JSON line (a revised final too, marked so); otherwise
closed segments are printed. Printed lines cannot be replaced, so text output keeps a
segment's first final and leaves revisions to the JSON lines and the transcript.
"""

from __future__ import annotations

import json

from ..engine.text import join_words
from ..session import Caption

_DIM, _RESET, _CLEAR = "\033[2m", "\033[0m", "\r\033[K"


class LiveView:
    def __init__(self, out, fmt: str):
        self.out = out
        self.fmt = fmt
        self.tty = out.isatty() and fmt == "text"
        self._open = False  # a segment is on the current line

    def __call__(self, caption: Caption) -> None:
        if caption.translated:
            self._translation(caption)
        elif self.fmt == "json":
            self._json(caption)
        elif caption.revised or self.fmt != "text":
            return
        elif self.tty:
            if caption.commits:
                self.out.write(f"{_CLEAR}{_who(caption)}{caption.text}")
                self._open = not caption.final
                if caption.final:
                    self.out.write("\n")
            else:
                # As the caption shows it (no space before a tail that opens with "." or ","),
                # the tail dimmed.
                shown = caption.shown
                cut = len(shown) - len(caption.tail) if shown.endswith(caption.tail) else len(shown)
                self.out.write(f"{_CLEAR}{shown[:cut]}{_DIM}{shown[cut:]}{_RESET}")
                self._open = True
            self.out.flush()
        elif caption.final and caption.text:
            self.out.write(_who(caption) + caption.text + "\n")
            self.out.flush()

    def _json(self, caption: Caption) -> None:
        if not (caption.tail or caption.commits):
            return
        if caption.commits:
            kind, words = "final", caption.new_words or caption.words
            text = join_words(caption.new_words, caption.language)
        else:
            kind, words, text = "interim", caption.tail_words, caption.tail
        self.out.write(
            json.dumps(
                {
                    "type": kind,
                    "text": text,
                    "start": round(words[0].start if words else caption.start, 3),
                    "end": round(words[-1].end if words else caption.end, 3),
                    "emitted_at": round(caption.emitted_at, 3),
                    "segment_id": caption.segment_id,
                    "segment_final": caption.final,
                    "revised": caption.revised,
                    "language": caption.language,
                    **({"speaker": caption.speaker} if caption.speaker is not None else {}),
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        self.out.flush()

    def _translation(self, caption: Caption) -> None:
        """A translation on a line of its own, under its segment (finals only, in text)."""
        for language in caption.translated:
            text = caption.translations[language]
            if self.fmt == "json":
                line = {
                    "type": "translation",
                    "segment_id": caption.segment_id,
                    "language": language,
                    "translation_of": caption.language,
                    "text": text,
                    "final": caption.final,
                }
                self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
            elif self.fmt == "text" and caption.final:
                if self.tty and self._open:
                    self.out.write(_CLEAR)  # the open segment's line is drawn again by its next update
                self.out.write(f"  [{language}] {_who(caption)}{text}\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._open:
            self.out.write("\n")
        self.out.flush()


def _who(caption: Caption) -> str:
    return f"{caption.speaker}: " if caption.speaker is not None else ""
