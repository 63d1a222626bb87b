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
    from ..web.app import run
    from ..web.config import ConfigError, ServerConfig, check_exposure

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
        )
        for warning in check_exposure(config, allow_no_auth=args.no_auth):
            print(f"roomscribe: warning: {warning}", file=sys.stderr)
    except (ConfigError, OptionsError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    logging.getLogger("roomscribe").setLevel(logging.INFO)
    try:
        engine = Engine(engine_config(args))
    except ModelNotFoundError as exc:
        return fail(str(exc), EXIT_NO_MODEL)
    try:
        run(config, worker_for(engine))
    except OSError as exc:  # port taken, certificate unreadable, ...
        return fail(f"cannot serve on {args.host}:{args.port}: {exc}", EXIT_BAD_INPUT)
    return 0
