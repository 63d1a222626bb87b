"""Who a request acts for: its tenant, from the key it sends.

- The server's own key (`ROOMSCRIBE_API_KEY`) is the admin key: it may act for any tenant,
  named by `tenant_id` (a query or form field) or the `X-Roomscribe-Tenant` header, else the
  local tenant.
- A tenant key (`roomscribe keys create TENANT`, kept hashed in the store) acts for its own
  tenant only; naming another tenant is refused (403), and another tenant's meetings do not
  exist for it (404), whatever their ids.
- Once any tenant key exists in the store, every data route needs a key, on loopback too. A
  store without keys and a server without a key (loopback, or `--no-auth`) keep one local
  tenant that needs no key.
- While the store is away (PostgreSQL down), a tenant key cannot be checked: such requests
  are a 503, and so are requests without a key to a store whose keys were never seen; a
  store last seen without keys keeps its local tenant (live captions go on).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import weakref
from dataclasses import dataclass

from aiohttp import web

from ..store import Store, StoreUnavailableError, parse_tenant
from .responses import RequestError

LOCAL_TENANT = "local"
TENANT_HEADER = "X-Roomscribe-Tenant"


@dataclass(frozen=True)
class Caller:
    tenant: str  # the tenant it acts for when it names none
    admin: bool  # may act for any tenant

    def act_for(self, named: str | None) -> str:
        """The tenant a request that names `named` (or none) acts for; `RequestError` when
        the caller may not."""
        if not named:
            return self.tenant
        try:
            named = parse_tenant(named)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        if named != self.tenant and not self.admin:
            raise RequestError(403, f"this key belongs to tenant {self.tenant!r}, not {named!r}")
        return named


CALLER = web.RequestKey("caller", Caller)  # where the guard leaves the request's `Caller`


def presented_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("key", "")


# Whether each store had keys when it last answered: what a request goes by while it is away.
_HAD_KEYS: weakref.WeakKeyDictionary[Store, bool] = weakref.WeakKeyDictionary()


async def _has_keys(store: Store) -> bool | None:
    """Whether the store has keys; while it is away, what it last said (None: never asked)."""
    try:
        found = await asyncio.to_thread(store.has_keys)
    except StoreUnavailableError:
        return _HAD_KEYS.get(store)
    _HAD_KEYS[store] = found
    return found


def _store_away() -> web.HTTPServiceUnavailable:
    message = "the key store is unavailable, so the API key cannot be checked: try again shortly"
    body = {"error": {"message": message, "type": "server_error", "code": 503}}
    return web.HTTPServiceUnavailable(text=json.dumps(body), content_type="application/json")


async def identify(request: web.Request, admin_key: str | None, store: Store | None) -> Caller | None:
    """The caller a request's key makes it, or None when it must not pass (no key where one is
    needed, or a wrong one). While the store is away, an `HTTPServiceUnavailable` where the
    key cannot be checked (see the module's docstring)."""
    given = presented_key(request)
    named = request.headers.get(TENANT_HEADER) or request.query.get("tenant_id") or None
    if admin_key and given and hmac.compare_digest(given.encode(), admin_key.encode()):
        return Caller(_tenant_or_local(named), admin=True)
    away = False
    if given and store is not None:
        try:
            tenant = await asyncio.to_thread(store.tenant_for_key, given)
        except StoreUnavailableError:
            tenant, away = None, True
        if tenant is not None:
            _HAD_KEYS[store] = True
            return Caller(tenant, admin=False)
    if away and (admin_key or await _has_keys(store) is not False):
        raise _store_away()  # perhaps a good key: not refused as a wrong one
    if admin_key:
        return None  # a key is needed here, and none (or a wrong one) was sent
    if store is not None:
        has_keys = await _has_keys(store)
        if has_keys is None:
            raise _store_away()
        if has_keys:
            return None
    # A private server: one local tenant, whatever key a client sends out of habit (OpenAI
    # clients always send one).
    return Caller(_tenant_or_local(named), admin=True)


def _tenant_or_local(named: str | None) -> str:
    if not named:
        return LOCAL_TENANT
    try:
        return parse_tenant(named)
    except ValueError:
        return LOCAL_TENANT  # `act_for` refuses it with the reason when a route uses it


def caller(request: web.Request) -> Caller:
    return request.get(CALLER) or Caller(LOCAL_TENANT, admin=True)


def tenant_of(request: web.Request, named: str | None = None) -> str:
    """The tenant a data route acts for (`named`, where the request names one)."""
    return caller(request).act_for(named or request.headers.get(TENANT_HEADER) or request.query.get("tenant_id"))
