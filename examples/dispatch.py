"""Switch roomscribe captions on or off for a LiveKit room, and mint join tokens.

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey \
           LIVEKIT_API_SECRET=roomscribe-dev-secret-0123456789abcdef
    python examples/dispatch.py start standup --language en --participant-language minji=ko
    python examples/dispatch.py stop standup
    python examples/dispatch.py token standup alice            # a join token for a person
    python examples/dispatch.py token standup alice --captions # ...that also dispatches the bot

`start` asks the server to dispatch the agent named "roomscribe" (ROOMSCRIBE_AGENT_NAME)
to the room, with the caption options as job metadata. A worker started with
`roomscribe start` takes the job and joins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from livekit import api

AGENT_NAME = os.environ.get("ROOMSCRIBE_AGENT_NAME", "roomscribe")


def caption_metadata(args: argparse.Namespace) -> str:
    options: dict = {}
    if args.language:
        options["language"] = args.language
    if args.participant_language:
        options["participant_languages"] = dict(item.split("=", 1) for item in args.participant_language)
    if args.policy:
        options["policy"] = args.policy
    if args.interims_per_second is not None:
        options["interims_per_second"] = args.interims_per_second
    return json.dumps(options)


async def start(args: argparse.Namespace) -> None:
    async with api.LiveKitAPI() as lk:
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=args.room, metadata=caption_metadata(args))
        )
        print(f"captions requested for room {args.room!r} (dispatch {dispatch.id})")


async def stop(args: argparse.Namespace) -> None:
    async with api.LiveKitAPI() as lk:
        for dispatch in await lk.agent_dispatch.list_dispatch(room_name=args.room):
            if dispatch.agent_name == AGENT_NAME:
                await lk.agent_dispatch.delete_dispatch(dispatch.id, args.room)
                print(f"dispatch {dispatch.id} removed")
        # The bot leaves when it is removed from the room.
        participants = await lk.room.list_participants(api.ListParticipantsRequest(room=args.room))
        for p in participants.participants:
            if p.kind == api.ParticipantInfo.Kind.AGENT and p.identity.startswith("roomscribe-"):
                await lk.room.remove_participant(api.RoomParticipantIdentity(room=args.room, identity=p.identity))
                print(f"removed {p.identity}")


def token(args: argparse.Namespace) -> None:
    grant = api.VideoGrants(room_join=True, room=args.room, can_publish=True, can_subscribe=True, can_publish_data=True)
    tok = api.AccessToken().with_identity(args.identity).with_name(args.identity).with_grants(grant)
    if args.captions:
        tok = tok.with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata=caption_metadata(args))]
            )
        )
    print(tok.to_jwt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "token"):
        p = sub.add_parser(name)
        p.add_argument("room")
        if name == "token":
            p.add_argument("identity")
            p.add_argument("--captions", action="store_true", help="dispatch the caption bot when this person joins")
        if name != "stop":
            p.add_argument("--language", help="room language (default: detect per speaker)")
            p.add_argument("--participant-language", action="append", metavar="IDENTITY=LANG")
            p.add_argument("--policy", choices=["localagreement", "alignatt"])
            p.add_argument("--interims-per-second", type=float)
    args = parser.parse_args()
    if args.command == "token":
        token(args)
    else:
        asyncio.run({"start": start, "stop": stop}[args.command](args))


if __name__ == "__main__":
    main()
