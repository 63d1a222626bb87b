"""`roomscribe keys create|list|revoke`: tenants' API keys, in the store `serve` uses.

A key is printed once, when it is created, as the last word of the output; the store keeps
only its hash. Once any key exists, every data route of `serve` needs one, on loopback too.
"""

from __future__ import annotations

import sys
import time

from .errors import EXIT_BAD_INPUT, fail


def add_parser(sub, add_store_options) -> None:
    k = sub.add_parser("keys", help="create, list and revoke tenants' API keys (in the store serve uses)")
    actions = k.add_subparsers(dest="keys_action", required=True, metavar="{create,list,revoke}")
    create = actions.add_parser("create", help="a new key for TENANT, printed once as the last word")
    create.add_argument("tenant", help="the tenant the key acts for (letters, digits, '.', '_', '-')")
    create.add_argument("--label", help="a note on what the key is for")
    listing = actions.add_parser("list", help="keys (never their secrets), of one tenant or all")
    listing.add_argument("tenant", nargs="?", help="only this tenant's keys")
    revoke = actions.add_parser("revoke", help="revoke a key by its id (as `keys list` shows it)")
    revoke.add_argument("key_id")
    for p in (create, listing, revoke):
        add_store_options(p)


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def keys(args) -> int:
    from ..store import StoreError, open_store, parse_tenant

    try:
        store = open_store(args.database, args.data_dir)
    except StoreError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        if args.keys_action == "create":
            try:
                tenant = parse_tenant(args.tenant)
            except ValueError as exc:
                return fail(str(exc), EXIT_BAD_INPUT)
            key, secret = store.create_key(tenant, args.label)
            print(f"created key {key.id} for tenant {tenant} (shown once; send it as 'Authorization: Bearer KEY'):")
            print(secret)
            return 0
        if args.keys_action == "list":
            rows = store.list_keys(args.tenant)
            if not rows:
                print("no keys", file=sys.stderr)
            for key in rows:
                state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
                label = f"  {key.label}" if key.label else ""
                print(
                    f"{key.id}  {key.tenant}  created {_when(key.created_at)}  "
                    f"last used {_when(key.last_used_at)}  {state}{label}"
                )
            return 0
        if store.revoke_key(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        return fail(f"no active key {args.key_id!r} (see roomscribe keys list)", EXIT_BAD_INPUT)
    finally:
        store.close()
