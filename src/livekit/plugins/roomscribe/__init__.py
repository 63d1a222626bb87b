"""LiveKit Agents plugin for roomscribe: self-hosted streaming Whisper speech-to-text.

    from livekit.plugins import roomscribe

    session = AgentSession(stt=roomscribe.STT(), ...)

A thin adapter over `roomscribe.session`: one model is loaded per process
(`shared_engine(model)` loads it ahead) and shared by every `STT` instance and stream;
model calls run on one worker thread per engine (`worker_for(engine)`), never on the
event loop.
"""

from roomscribe import __version__  # the one version (pyproject.toml reads it too)
from roomscribe.session import EngineWorker, shared_engine, worker_for

from .stt import STT, RecognizeStream, STTOptions

__all__ = ["STT", "RecognizeStream", "STTOptions", "EngineWorker", "shared_engine", "worker_for", "__version__"]

from livekit.agents import Plugin

from .log import logger


class RoomscribePlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(RoomscribePlugin())

# Keep unexported modules out of the generated docs.
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
