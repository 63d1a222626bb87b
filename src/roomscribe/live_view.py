"""Show caption events as they would appear live.

On a terminal the interim tail updates in place and finals are appended; with
--format json every event is one JSON line; otherwise closed segments are printed.
"""

from __future__ import annotations

import json

from .engine import Event, EventType

_DIM, _RESET, _CLEAR = "\033[2m", "\033[0m", "\r\033[K"


class LiveView:
    def __init__(self, out, fmt: str):
        self.out = out
        self.fmt = fmt
        self.tty = out.isatty() and fmt == "text"
        self._line = ""

    def show(self, event: Event) -> None:
        if self.fmt == "json":
            if event.type in (EventType.INTERIM, EventType.FINAL) and (event.text or event.segment_final):
                self.out.write(json.dumps({
                    "type": event.type.value, "text": event.text, "start": round(event.start, 3),
                    "end": round(event.end, 3), "emitted_at": round(event.emitted_at, 3),
                    "segment_id": event.segment_id, "segment_final": event.segment_final,
                    "language": event.language}, ensure_ascii=False) + "\n")
                self.out.flush()
            return
        if self.fmt != "text":
            return
        if self.tty:
            if event.type is EventType.INTERIM:
                self.out.write(f"{_CLEAR}{self._committed(event)}{_DIM}{event.text}{_RESET}")
            elif event.type is EventType.FINAL:
                self._line = event.segment_text
                self.out.write(f"{_CLEAR}{event.segment_text}")
                if event.segment_final:
                    self.out.write("\n")
                    self._line = ""
            self.out.flush()
        elif event.type is EventType.FINAL and event.segment_final and event.segment_text:
            self.out.write(event.segment_text + "\n")
            self.out.flush()

    def _committed(self, event: Event) -> str:
        return self._line + " " if self._line else ""

    def close(self) -> None:
        if self.tty and self._line:
            self.out.write("\n")
        self.out.flush()
