"""LiveKit Agents plugin for roomscribe: self-hosted streaming Whisper speech-to-text.

    from livekit.plugins import roomscribe

    session = AgentSession(stt=roomscribe.STT(), ...)

One model is loaded per process and shared by every `STT` instance and stream;
model calls run on one worker thread, never on the event loop.
"""

from roomscribe.scheduler import EngineWorker, shared_engine, worker_for
from .stt import STT, RecognizeStream
from .version import __version__

__all__ = ["STT", "RecognizeStream", "EngineWorker", "shared_engine", "worker_for", "__version__"]

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
