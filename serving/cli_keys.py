"""``upstream keys create|list|revoke``: manage API keys. A new key is printed once, never stored in clear."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--role", required=True, choices=["locality", "analyst", "admin"])
    create.add_argument(
        "--locality", action="append", default=[], help="locality in scope (repeat for several; locality role only)"
    )
    create.add_argument("--label", default=None, help="who or what the key is for")
    sub.add_parser("list", help="list keys (ids, roles, scope; never secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def run(args: argparse.Namespace) -> int:
    from serving.keys import create_key, list_keys, revoke_key
    from upstream.errors import UpstreamError
    from upstream.settings import get_settings
    from upstream.store import get_engine

    engine = get_engine(get_settings().db_url)
    if args.keys_command == "create":
        key = create_key(engine, args.role, args.locality, args.label)
        print(key)
        print("Store this key now: it will not be shown again.", flush=True)
        return 0
    if args.keys_command == "list":
        print(f"{'key_id':<18} {'role':<9} {'status':<8} {'created (UTC)':<20} localities / label")
        for k in list_keys(engine):
            status = "revoked" if k["revoked_at"] else "active"
            scope = ", ".join(k["localities"] or []) or "all"
            label = f" / {k['label']}" if k["label"] else ""
            print(f"{k['key_id']:<18} {k['role']:<9} {status:<8} {k['created_at']:%Y-%m-%d %H:%M:%S}  {scope}{label}")
        return 0
    if not revoke_key(engine, args.key_id):
        raise UpstreamError(f"no active key with id {args.key_id!r}")
    print(f"revoked {args.key_id}")
    return 0
