"""The LiveKit door: a caption agent that captions every participant of a room on `lk.transcription`.

It stands on `roomscribe.session`: each remote audio track is a `LiveSpeaker` on the
process's shared model, its captions pass the speaker's pipeline to the room's publisher.

- `room.py`: the room logic (tracks, participants' languages, mute, pause, control); no LiveKit in it.
- `captions.py`: `CaptionPublisher`, each track's captions sent in order, interims replaced, finals retried.
- `livekit_room.py`: binds a room to an `rtc.Room`: frames to 16 kHz, captions on the LiveKit wire.
- `options.py`: a room's caption options, from the environment and the job's metadata.
- `worker.py`: the LiveKit Agents worker (`roomscribe start|dev|connect`), one model per process.
- `capacity.py`, `metrics.py`: the worker's load for dispatch, and its Prometheus metrics.
"""
