"""The LiveKit caption bot: caption every participant of a room on `lk.transcription`.

`room.py` holds the room logic (no LiveKit connection), `livekit_room.py` binds it to
an `rtc.Room`, and `worker.py` runs it as a LiveKit Agents worker.
"""
