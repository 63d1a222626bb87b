"""The streaming speech engine: pure code over numpy, CTranslate2 and onnxruntime."""

from .engine import Engine, EngineConfig, OfflineSegment, OfflineTranscript
from .events import Event, EventType, Word
from .models import DEFAULT_MODEL, ModelNotFoundError, resolve_model
from .pcm import InputError
from .stream import SpeechStream, StreamConfig
from .vad import VadConfig

__all__ = [
    "DEFAULT_MODEL",
    "Engine",
    "EngineConfig",
    "Event",
    "EventType",
    "InputError",
    "ModelNotFoundError",
    "OfflineSegment",
    "OfflineTranscript",
    "SpeechStream",
    "StreamConfig",
    "VadConfig",
    "Word",
    "resolve_model",
]
