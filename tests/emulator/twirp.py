"""Twirp endpoints: ``livekit.RoomService`` and ``livekit.AgentDispatchService``.

Both ``application/protobuf`` and ``application/json`` bodies are accepted; the answer
uses the request's content type. Errors are Twirp JSON ``{"code", "msg"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch as ad
from livekit.protocol import room as room_pb

from livekit import api

if TYPE_CHECKING:
    from .server import Emulator

Handler = Callable[["Emulator", Message], Awaitable[Message]]


class TwirpError(Exception):
    STATUS = {
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "bad_route": 404,
        "malformed": 400,
        "invalid_argument": 400,
        "internal": 500,
    }

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.STATUS.get(self.code, 500))


# -- RoomService -------------------------------------------------------------------------------
async def _list_rooms(emu: Emulator, req: room_pb.ListRoomsRequest) -> Message:
    names = set(req.names)
    return room_pb.ListRoomsResponse(rooms=[r.info() for r in emu.rooms.values() if not names or r.name in names])


async def _create_room(emu: Emulator, req: room_pb.CreateRoomRequest) -> Message:
    if not req.name:
        raise TwirpError("invalid_argument", "room name is required")
    r = emu.ensure_room(
        req.name, metadata=req.metadata, empty_timeout=req.empty_timeout, max_participants=req.max_participants
    )
    for a in req.agents:
        emu.dispatcher.create(r.name, a.agent_name, a.metadata)
    return r.info()


async def _delete_room(emu: Emulator, req: room_pb.DeleteRoomRequest) -> Message:
    if req.room not in emu.rooms:
        raise TwirpError("not_found", f"room {req.room!r} does not exist")
    await emu.delete_room(req.room)
    return room_pb.DeleteRoomResponse()


async def _list_participants(emu: Emulator, req: room_pb.ListParticipantsRequest) -> Message:
    r = emu.rooms.get(req.room)
    return room_pb.ListParticipantsResponse(participants=[p.info() for p in r.participants.values()] if r else [])


async def _remove_participant(emu: Emulator, req: room_pb.RoomParticipantIdentity) -> Message:
    try:
        await emu.remove_participant(req.room, req.identity)
    except KeyError as e:
        raise TwirpError("not_found", str(e)) from None
    return room_pb.RemoveParticipantResponse()


async def _send_data(emu: Emulator, req: room_pb.SendDataRequest) -> Message:
    await emu.send_data(
        req.room, "", req.data, req.topic, kind=req.kind, destination_identities=list(req.destination_identities)
    )
    return room_pb.SendDataResponse()


# -- AgentDispatchService ----------------------------------------------------------------------
def _dispatch_pb(emu: Emulator, d) -> ad.AgentDispatch:
    return ad.AgentDispatch(
        id=d.id, agent_name=d.agent_name, room=d.room, metadata=d.metadata, state=ad.AgentDispatchState()
    )


async def _create_dispatch(emu: Emulator, req: ad.CreateAgentDispatchRequest) -> Message:
    if not req.room:
        raise TwirpError("invalid_argument", "room is required")
    return _dispatch_pb(emu, await emu.create_dispatch(req.room, req.agent_name, req.metadata))


async def _list_dispatch(emu: Emulator, req: ad.ListAgentDispatchRequest) -> Message:
    return ad.ListAgentDispatchResponse(
        agent_dispatches=[
            _dispatch_pb(emu, d)
            for d in emu.dispatches
            if d.room == req.room and (not req.dispatch_id or d.id == req.dispatch_id)
        ]
    )


# (service, method) -> (request class, required grant, handler)
ROUTES: dict[tuple[str, str], tuple[type[Message], str, Handler]] = {
    ("RoomService", "ListRooms"): (room_pb.ListRoomsRequest, "room_list", _list_rooms),
    ("RoomService", "CreateRoom"): (room_pb.CreateRoomRequest, "room_create", _create_room),
    ("RoomService", "DeleteRoom"): (room_pb.DeleteRoomRequest, "room_create", _delete_room),
    ("RoomService", "ListParticipants"): (room_pb.ListParticipantsRequest, "room_admin", _list_participants),
    ("RoomService", "RemoveParticipant"): (room_pb.RoomParticipantIdentity, "room_admin", _remove_participant),
    ("RoomService", "SendData"): (room_pb.SendDataRequest, "room_admin", _send_data),
    ("AgentDispatchService", "CreateDispatch"): (ad.CreateAgentDispatchRequest, "room_admin", _create_dispatch),
    ("AgentDispatchService", "ListDispatch"): (ad.ListAgentDispatchRequest, "room_admin", _list_dispatch),
}


def _is_json(request: web.Request) -> bool:
    return request.content_type.split(";")[0].strip() == "application/json"


async def handle(request: web.Request) -> web.Response:
    from .server import EMULATOR_KEY

    emu = request.app[EMULATOR_KEY]
    key = (request.match_info["service"], request.match_info["method"])
    try:
        if key not in ROUTES:
            raise TwirpError("bad_route", f"no handler for livekit.{key[0]}/{key[1]}")
        req_cls, grant, handler = ROUTES[key]
        claims: api.access_token.Claims | None = emu._auth(request)
        if claims is None:
            raise TwirpError("unauthenticated", "invalid or missing token")
        if claims.video is None or not getattr(claims.video, grant, False):
            raise TwirpError("permission_denied", f"token lacks the {grant} grant")
        body = await request.read()
        req = req_cls()
        try:
            if _is_json(request):
                json_format.Parse(body.decode() or "{}", req, ignore_unknown_fields=True)
            else:
                req.ParseFromString(body)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as e:
            raise TwirpError("malformed", f"bad request body: {e}") from None
        emu.twirp_calls.append((f"{key[0]}/{key[1]}", req))
        resp = await handler(emu, req)
    except TwirpError as e:
        return e.response()
    if _is_json(request):
        return web.Response(text=json_format.MessageToJson(resp), content_type="application/json")
    return web.Response(body=resp.SerializeToString(), content_type="application/protobuf")


def setup(app: web.Application) -> None:
    app.router.add_post("/twirp/livekit.{service}/{method}", handle)
