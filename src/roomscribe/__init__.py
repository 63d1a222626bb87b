"""roomscribe: self-hosted real-time captions for LiveKit/WebRTC rooms."""

__version__ = "0.1.0"
