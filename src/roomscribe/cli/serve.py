"""`roomscribe serve`: the embedded server on this machine's one model."""

from __future__ import annotations

import logging
import os
import sys

from . import engine_config
from .errors import EXIT_BAD_INPUT, EXIT_NO_MODEL, fail


def serve(args) -> int:
    from ..engine import Engine, ModelNotFoundError
    from ..session.options import OptionsError, parse_language
    from ..session.scheduler import worker_for
    from ..store import StoreError, open_store
    from ..web.app import run
    from ..web.config import ConfigError, ServerConfig, check_exposure
    from ..web.fetch import FetchPolicy

    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            api_key=os.environ.get("ROOMSCRIBE_API_KEY") or None,
            policy=args.policy,
            language=parse_language(args.language),
            max_upload_mb=args.max_upload_mb,
            max_file_minutes=args.max_file_minutes,
            max_live_streams=args.max_live_streams,
            diarizer=args.diarizer,
            records=not args.no_records,
            data_dir=args.data_dir,
            database=args.database,
            keep_audio=args.keep_audio,
            retention_days=args.retention_days,
            allow_fetch=tuple(FetchPolicy.parse_allow(args.allow_fetch)),
            media_root=args.media_root,
        )
        if args.retention_days is not None and args.retention_days <= 0:
            raise ConfigError("--retention-days is a number of days above 0")
        if args.media_root and not os.path.isdir(args.media_root):
            raise ConfigError(f"--media-root {args.media_root} is not a directory")
        store = open_store(config.database, config.data_dir) if config.records else None
        tenant_keys = store is not None and store.has_keys()
        for warning in check_exposure(config, allow_no_auth=args.no_auth, tenant_keys=tenant_keys):
            print(f"roomscribe: warning: {warning}", file=sys.stderr)
    except (ConfigError, OptionsError, StoreError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    logging.getLogger("roomscribe").setLevel(logging.INFO)
    try:
        engine = Engine(engine_config(args))
    except ModelNotFoundError as exc:
        return fail(str(exc), EXIT_NO_MODEL)
    try:
        run(config, worker_for(engine), store)
    except OSError as exc:  # port taken, certificate unreadable, ...
        return fail(f"cannot serve on {args.host}:{args.port}: {exc}", EXIT_BAD_INPUT)
    return 0
