"""What the SFU does to a DataPacket a client sends, before other clients receive it.

Mirrors livekit-server ``pkg/rtc/participant.go`` (handleReceivedDataMessage):

* ``participant_identity`` is overwritten with the real sender's identity, EXCEPT for a
  *text* ``stream_header`` (and a ``chat_message``) from an AGENT-kind participant that
  names another identity: that identity is kept and ``text_header.generated`` is set;
* ``user`` packets get the sender's sid and identity inside the UserPacket too;
* legacy ``transcription`` packets are only forwarded from agents;
* ``metrics`` packets are not forwarded.
"""

from __future__ import annotations

from livekit.protocol import models

from .room import Participant


def apply_sfu_rule(dp: models.DataPacket, sender: Participant, kind: int) -> bool:
    """Rewrite ``dp`` in place as the SFU does; return whether it is forwarded to others."""
    dp.kind = kind
    which = dp.WhichOneof("value")
    forward = True
    override = True
    on_behalf = sender.is_agent and dp.participant_identity not in ("", sender.identity)
    if which == "user":
        dp.user.participant_sid = sender.sid
        dp.user.participant_identity = sender.identity
        if len(dp.destination_identities):
            dp.user.destination_identities[:] = list(dp.destination_identities)
        else:
            dp.destination_identities[:] = list(dp.user.destination_identities)
    elif which == "transcription":
        forward = sender.is_agent
    elif which == "chat_message":
        if on_behalf:
            override = False
            dp.chat_message.generated = True
    elif which == "metrics":
        forward = False
    elif which == "stream_header":
        if on_behalf and dp.stream_header.HasField("text_header"):
            dp.stream_header.text_header.generated = True
            override = False
    if override:
        dp.participant_identity = sender.identity
    dp.participant_sid = sender.sid
    return forward


def server_user_packet(
    payload: bytes,
    topic: str,
    *,
    from_identity: str = "",
    from_sid: str = "",
    kind: int = models.DataPacket.Kind.RELIABLE,
    destination_identities: list[str] | None = None,
) -> models.DataPacket:
    """A user DataPacket as a client receives it when ``from_identity`` sent it."""
    dests = list(destination_identities or [])
    return models.DataPacket(
        kind=kind,
        participant_identity=from_identity,
        participant_sid=from_sid,
        destination_identities=dests,
        user=models.UserPacket(
            payload=payload,
            topic=topic,
            participant_identity=from_identity,
            participant_sid=from_sid,
            destination_identities=dests,
        ),
    )
