"""A stand-in for the scheduler that decodes nothing: what a `LiveSpeaker` asks of it, for
tests of the speaker's own state (its audio, its clock)."""

from __future__ import annotations

from roomscribe.session.scheduler import StreamHandle


class IdleWorker:
    def open(self, config, deliver, offset=0.0):
        return StreamHandle(config=config, deliver=deliver, offset=offset)

    def push(self, handle, audio):
        pass

    def end(self, handle):
        pass

    def close(self, handle):
        pass
