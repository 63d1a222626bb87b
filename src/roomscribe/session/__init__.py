"""The runtime every door stands on.

A door (the LiveKit agent, the page, `/asr`, the plugin, files) turns its audio into 16 kHz
mono (`roomscribe.audio`) and its clients' options into stream options (`options`), and hands
audio to a `LiveSpeaker` (`speaker`). Speakers share the process's one model through the
scheduler (`scheduler`, slowed down under load by `governor`); what they say comes out as
`Caption`s (`caption`) that pass through the speaker's `Pipeline` of stages to its sinks
(`pipeline`; `transcript` is one sink, `formats` renders transcripts). `control` parses the
control messages clients send while captions run.
"""

from .caption import Caption, CaptionBuilder
from .control import ControlError, ControlMessage, Pause, Ping, Resume, SetLanguage, Stop, parse_control
from .options import OptionsError, parse_language, parse_policy, parse_task
from .pipeline import InterimThrottle, Pipeline, Sink, Stage
from .scheduler import EngineWorker, shared_engine, worker_for
from .speaker import LiveSpeaker
from .transcript import Transcript

__all__ = [
    "Caption",
    "CaptionBuilder",
    "ControlError",
    "ControlMessage",
    "EngineWorker",
    "InterimThrottle",
    "LiveSpeaker",
    "OptionsError",
    "Pause",
    "Ping",
    "Pipeline",
    "Resume",
    "SetLanguage",
    "Sink",
    "Stage",
    "Stop",
    "Transcript",
    "parse_control",
    "parse_language",
    "parse_policy",
    "parse_task",
    "shared_engine",
    "worker_for",
]
