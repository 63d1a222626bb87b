"""The `roomscribe` command: `serve`, `transcribe`, `keys`, and the LiveKit agent's `start|dev|connect`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..engine.speakers import DIARIZERS
from ..session.formats import FORMATS
from ..session.options import POLICIES, TASKS
from .errors import EXIT_BAD_INPUT


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="Whisper model: base (default, multilingual), tiny.en, a CTranslate2 directory, "
        "or a faster-whisper name (downloaded only where a network exists)",
    )
    p.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (default int8)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: all cores)")
    p.add_argument("--language", default=None, help="language code or name (en, ko, Korean, ...); default: detect")
    p.add_argument(
        "--diarizer",
        default=os.environ.get("ROOMSCRIBE_DIARIZER") or "campplus",
        choices=DIARIZERS,
        help="speaker diarization backend: campplus (default; roomscribe[diarization]) or sortformer "
        "(NVIDIA streaming Sortformer, up to 4 voices; roomscribe[sortformer]); env ROOMSCRIBE_DIARIZER",
    )
    p.add_argument(
        "--diarizer-model",
        default=os.environ.get("ROOMSCRIBE_DIARIZER_MODEL") or None,
        help="the diarizer's model: for sortformer a .nemo file, or a hub name where a network exists "
        "(default nvidia/diar_streaming_sortformer_4spk-v2.1); env ROOMSCRIBE_DIARIZER_MODEL",
    )


def engine_config(args):
    """The engine a command's options ask for."""
    from ..engine import EngineConfig
    from ..engine.speakers import DiarizerChoice

    return EngineConfig(
        model=args.model,
        compute_type=args.compute_type,
        threads=args.threads,
        diarizer=DiarizerChoice(args.diarizer, args.diarizer_model),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomscribe", description="Real-time captions for rooms and files.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{serve,transcribe,keys,start,dev,connect}")
    _add_serve(sub)
    from .keys import add_parser as add_keys

    add_keys(sub, _add_store_options)
    # The LiveKit commands are parsed by livekit-agents; listed here for --help only.
    sub.add_parser("start", help="caption LiveKit rooms dispatched to agent 'roomscribe' (LIVEKIT_URL, ...)")
    sub.add_parser("dev", help="like start, with debug logs")
    sub.add_parser("connect", help="caption one LiveKit room directly: connect --room NAME")

    t = sub.add_parser("transcribe", help="transcribe a file, offline or as a live stream would be captioned")
    t.add_argument("file", help="any audio or video file ffmpeg can decode")
    t.add_argument(
        "--simulate",
        action="store_true",
        help="play the file at 1x through the streaming engine and show live captions",
    )
    t.add_argument("--policy", default="localagreement", choices=POLICIES)
    t.add_argument("--format", default="text", choices=FORMATS)
    t.add_argument(
        "--clock",
        default="realtime",
        choices=["realtime", "aware", "unaware"],
        help="--simulate clock: realtime (1x wall clock), aware (1x with compute counted, "
        "no waiting), unaware (compute is free)",
    )
    t.add_argument("--frame-threshold", type=int, default=25, help="AlignAtt: frames (20 ms) kept clear of the end")
    t.add_argument("--min-chunk", type=float, default=0.5, help="seconds of new audio between decodes")
    t.add_argument("--beam-size", type=int, default=1, help="offline beam size (default 1)")
    t.add_argument(
        "--prompt",
        default="",
        help="names and words to expect (e.g. 'Subiaco, Jenson'): kept in the decoder's context, not captioned",
    )
    t.add_argument(
        "--diarize",
        action="store_true",
        help="tell the voices apart: segments (and, with --simulate, every final) say who spoke (S1, S2, ...); "
        "needs pip install 'roomscribe[diarization]'",
    )
    t.add_argument("--num-speakers", type=int, help="with --diarize: how many voices there are, if known")
    t.add_argument("--min-speakers", type=int, help="with --diarize: at least this many voices")
    t.add_argument("--max-speakers", type=int, help="with --diarize: at most this many voices")
    t.add_argument(
        "--task",
        default="transcribe",
        choices=TASKS,
        help="translate: any language to English (Whisper's own translation)",
    )
    t.add_argument(
        "--translate-to",
        metavar="LANGS",
        action="append",
        help="also translate each segment into these languages (codes or names, comma-separated or repeated: "
        "ko,fr); json gets `translations` per segment, and with -o OUT.srt each language gets its own file "
        "(OUT.ko.srt); needs pip install 'roomscribe[translate]' or ROOMSCRIBE_TRANSLATOR_URL",
    )
    t.add_argument(
        "--subtitle-language",
        metavar="LANG",
        help="with --translate-to: print text, srt or vtt in this translation instead of as spoken",
    )
    t.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the transcript to FILE instead of stdout (with --translate-to, FILE.LANG.EXT for each language)",
    )
    t.add_argument(
        "--server",
        metavar="URL",
        help="transcribe on a running `roomscribe serve` (e.g. http://127.0.0.1:8000) instead of "
        "loading the model here; ROOMSCRIBE_API_KEY is sent as its key",
    )
    _add_engine_options(t)
    return parser


def _add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("ROOMSCRIBE_DATA_DIR") or None,
        help="where meeting records live (SQLite; default: the user's data directory); env ROOMSCRIBE_DATA_DIR",
    )
    p.add_argument(
        "--database",
        default=os.environ.get("ROOMSCRIBE_DATABASE") or None,
        help="a PostgreSQL URL (postgresql://user@host/db) shared by several servers and agents, instead of "
        "SQLite in --data-dir; needs pip install 'roomscribe[postgres]'; env ROOMSCRIBE_DATABASE",
    )


def _add_serve(sub) -> None:
    s = sub.add_parser(
        "serve", help="serve the caption page, the /asr WebSocket and file transcription (no LiveKit server needed)"
    )
    s.add_argument(
        "--host",
        default=os.environ.get("ROOMSCRIBE_HOST", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1; anything else needs ROOMSCRIBE_API_KEY)",
    )
    s.add_argument("--port", type=int, default=int(os.environ.get("ROOMSCRIBE_PORT", "8000")))
    s.add_argument(
        "--certfile", help="TLS certificate (PEM): serve https, which browsers need for the microphone beyond localhost"
    )
    s.add_argument("--keyfile", help="TLS private key (PEM)")
    s.add_argument(
        "--no-auth",
        action="store_true",
        help="allow a non-loopback --host without ROOMSCRIBE_API_KEY (anyone on the network may use it)",
    )
    s.add_argument(
        "--policy",
        default="localagreement",
        choices=POLICIES,
        help="default streaming policy (clients may choose per stream)",
    )
    s.add_argument("--max-upload-mb", type=float, default=200.0, help="largest file upload (default 200)")
    s.add_argument("--max-file-minutes", type=float, default=180.0, help="longest file (default 180)")
    s.add_argument(
        "--max-live-streams",
        type=int,
        default=64,
        help="speakers streaming at once, page and /asr together (default 64)",
    )
    _add_store_options(s)
    s.add_argument("--no-records", action="store_true", help="keep no meeting records (no /meetings, /jobs or /stt)")
    s.add_argument(
        "--keep-audio",
        action="store_true",
        help="store the audio of uploads and URL jobs with their meetings (not kept by default)",
    )
    s.add_argument(
        "--retention-days",
        type=float,
        default=float(os.environ["ROOMSCRIBE_RETENTION_DAYS"]) if os.environ.get("ROOMSCRIBE_RETENTION_DAYS") else None,
        help="delete meetings older than this many days (default: keep them); env ROOMSCRIBE_RETENTION_DAYS",
    )
    s.add_argument(
        "--allow-fetch",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help="let URL jobs fetch from this private network or host (repeatable; public addresses need nothing)",
    )
    s.add_argument(
        "--media-root",
        help="let jobs read local files below this directory (file:// or a path); none are read without it",
    )
    _add_engine_options(s)


LIVEKIT_COMMANDS = ("start", "dev", "connect", "download-files")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in LIVEKIT_COMMANDS:
        return _run_agent(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "transcribe":
            from .transcribe import transcribe

            return transcribe(args)
        if args.command == "serve":
            from .serve import serve

            return serve(args)
        if args.command == "keys":
            from .keys import keys

            return keys(args)
    except BrokenPipeError:  # output closed early (e.g. piped into head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return EXIT_BAD_INPUT


def _run_agent(argv: list[str]) -> int:
    try:
        from ..agent.worker import run
    except ImportError as exc:
        print(
            f"roomscribe: the LiveKit caption agent needs the livekit extra: pip install 'roomscribe[livekit]' ({exc})",
            file=sys.stderr,
        )
        return 2
    run(argv)
    return 0
