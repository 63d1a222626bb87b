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
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass

from aiohttp import web

from ..store import Store, parse_tenant
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


async def identify(request: web.Request, admin_key: str | None, store: Store | None) -> Caller | None:
    """The caller a request's key makes it, or None when it must not pass (no key where one is
    needed, or a wrong one)."""
    given = presented_key(request)
    named = request.headers.get(TENANT_HEADER) or request.query.get("tenant_id") or None
    if admin_key and given and hmac.compare_digest(given.encode(), admin_key.encode()):
        return Caller(_tenant_or_local(named), admin=True)
    if given and store is not None:
        tenant = await asyncio.to_thread(store.tenant_for_key, given)
        if tenant is not None:
            return Caller(tenant, admin=False)
    if admin_key or (store is not None and await asyncio.to_thread(store.has_keys)):
        return None  # keys are needed here, and none (or a wrong one) was sent
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
