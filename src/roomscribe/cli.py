"""The `roomscribe` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict

EXIT_BAD_INPUT = 2
EXIT_NO_MODEL = 3


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="Whisper model: base (default, multilingual), tiny.en, a CTranslate2 directory, "
                        "or a faster-whisper name (downloaded only where a network exists)")
    p.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (default int8)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: all cores)")
    p.add_argument("--language", default=None, help="language code (en, ko, ...); default: detect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomscribe", description="Real-time captions for rooms and files.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{serve,transcribe,start,dev,connect}")
    _add_serve(sub)
    # The LiveKit commands are parsed by livekit-agents; listed here for --help only.
    sub.add_parser("start", help="caption LiveKit rooms dispatched to agent 'roomscribe' (LIVEKIT_URL, ...)")
    sub.add_parser("dev", help="like start, with debug logs")
    sub.add_parser("connect", help="caption one LiveKit room directly: connect --room NAME")

    t = sub.add_parser("transcribe", help="transcribe a file, offline or as a live stream would be captioned")
    t.add_argument("file", help="any audio or video file ffmpeg can decode")
    t.add_argument("--simulate", action="store_true",
                   help="play the file at 1x through the streaming engine and show live captions")
    t.add_argument("--policy", default="localagreement", choices=["localagreement", "alignatt"])
    t.add_argument("--format", default="text", choices=["text", "json", "srt", "vtt"])
    t.add_argument("--clock", default="realtime", choices=["realtime", "aware", "unaware"],
                   help="--simulate clock: realtime (1x wall clock), aware (1x with compute counted, "
                        "no waiting), unaware (compute is free)")
    t.add_argument("--frame-threshold", type=int, default=25, help="AlignAtt: frames (20 ms) kept clear of the end")
    t.add_argument("--min-chunk", type=float, default=0.5, help="seconds of new audio between decodes")
    t.add_argument("--beam-size", type=int, default=1, help="offline beam size (default 1)")
    t.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                   help="translate: any language to English (Whisper's own translation)")
    t.add_argument("--server", metavar="URL",
                   help="transcribe on a running `roomscribe serve` (e.g. http://127.0.0.1:8000) instead of "
                        "loading the model here; ROOMSCRIBE_API_KEY is sent as its key")
    _add_engine_options(t)
    return parser


def _add_serve(sub) -> None:
    s = sub.add_parser("serve", help="serve the caption page, the /asr WebSocket and file transcription "
                                     "(no LiveKit server needed)")
    s.add_argument("--host", default=os.environ.get("ROOMSCRIBE_HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; anything else needs ROOMSCRIBE_API_KEY)")
    s.add_argument("--port", type=int, default=int(os.environ.get("ROOMSCRIBE_PORT", "8000")))
    s.add_argument("--certfile", help="TLS certificate (PEM): serve https, which browsers need for the "
                                      "microphone beyond localhost")
    s.add_argument("--keyfile", help="TLS private key (PEM)")
    s.add_argument("--no-auth", action="store_true",
                   help="allow a non-loopback --host without ROOMSCRIBE_API_KEY (anyone on the network may use it)")
    s.add_argument("--policy", default="localagreement", choices=["localagreement", "alignatt"],
                   help="default streaming policy (clients may choose per stream)")
    s.add_argument("--max-upload-mb", type=float, default=200.0, help="largest file upload (default 200)")
    s.add_argument("--max-file-minutes", type=float, default=180.0, help="longest file (default 180)")
    s.add_argument("--max-live-streams", type=int, default=64,
                   help="speakers streaming at once, page and /asr together (default 64)")
    _add_engine_options(s)


LIVEKIT_COMMANDS = ("start", "dev", "connect", "download-files")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in LIVEKIT_COMMANDS:
        return _run_caption_bot(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "transcribe":
            return _transcribe(args)
        if args.command == "serve":
            return _serve(args)
    except BrokenPipeError:  # output closed early (e.g. piped into head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return EXIT_BAD_INPUT


def _serve(args) -> int:
    from .engine import Engine, EngineConfig, ModelNotFoundError
    from .scheduler import worker_for
    from .web.app import ConfigError, ServerConfig, check_exposure, run

    config = ServerConfig(host=args.host, port=args.port, certfile=args.certfile, keyfile=args.keyfile,
                          api_key=os.environ.get("ROOMSCRIBE_API_KEY") or None, policy=args.policy,
                          language=args.language, max_upload_mb=args.max_upload_mb,
                          max_file_minutes=args.max_file_minutes, max_live_streams=args.max_live_streams)
    try:
        for warning in check_exposure(config, allow_no_auth=args.no_auth):
            print(f"roomscribe: warning: {warning}", file=sys.stderr)
        if args.language:
            from .live import whisper_language

            config.language = whisper_language(args.language)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    logging.getLogger("roomscribe").setLevel(logging.INFO)
    try:
        engine = Engine(EngineConfig(model=args.model, compute_type=args.compute_type, threads=args.threads))
    except ModelNotFoundError as exc:
        return _fail(str(exc), EXIT_NO_MODEL)
    try:
        run(config, worker_for(engine))
    except OSError as exc:  # port taken, certificate unreadable, ...
        return _fail(f"cannot serve on {args.host}:{args.port}: {exc}", EXIT_BAD_INPUT)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"roomscribe: error: {message}", file=sys.stderr)
    return code


def _transcribe(args) -> int:
    from .audio import AudioFileError, load_audio

    if args.server:
        from .remote import transcribe_remote

        return transcribe_remote(args)
    from .engine import Engine, EngineConfig, ModelNotFoundError

    try:
        audio = load_audio(args.file)
    except AudioFileError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    try:
        engine = Engine(EngineConfig(model=args.model, compute_type=args.compute_type, threads=args.threads))
    except ModelNotFoundError as exc:
        return _fail(str(exc), EXIT_NO_MODEL)
    if args.simulate:
        return _simulate(engine, audio, args)
    return _offline(engine, audio, args)


def _offline(engine, audio, args) -> int:
    from .formats import Cue, render
    from .progress import ProgressBar

    bar = ProgressBar(enabled=sys.stderr.isatty())
    result = engine.transcribe(audio, language=args.language, beam_size=args.beam_size, task=args.task,
                               progress=bar.update)
    bar.close()
    cues = [Cue(s.start, s.end, s.text) for s in result.segments]
    doc = {"language": result.language, "duration": round(result.duration, 3),
           "processing_time": round(result.processing_time, 3), "text": result.text,
           "segments": [asdict(s) for s in result.segments]}
    sys.stdout.write(render(cues, args.format, doc))
    print(f"roomscribe: {result.duration:.1f} s of audio in {result.processing_time:.1f} s "
          f"(RTF {result.processing_time / max(result.duration, 1e-9):.3f}), language {result.language}",
          file=sys.stderr)
    return 0


def _simulate(engine, audio, args) -> int:
    from .engine import StreamConfig
    from .formats import Cue, render
    from .live_view import LiveView
    from .simulation import simulate
    from .stats import percentile

    try:
        config = StreamConfig(policy=args.policy, language=args.language, task=args.task,
                              frame_threshold=args.frame_threshold, min_chunk_seconds=args.min_chunk)
    except ValueError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    view = LiveView(sys.stdout, args.format)
    result = simulate(engine, audio, config, mode=args.clock, on_event=view.show)
    view.close()
    if args.format in ("srt", "vtt"):
        cues = [Cue(e.start, e.end, e.segment_text) for e in result.segments()]
        sys.stdout.write(render(cues, args.format))
    lat = result.final_word_latencies()
    first = result.first_interim_delay()
    print(f"roomscribe: policy {args.policy}, clock {args.clock}: {result.audio_seconds:.1f} s audio, "
          f"compute {result.compute_seconds:.1f} s (RTF {result.rtf:.2f}), {result.decodes} decodes; "
          f"final latency (word end to final) p50 {percentile(lat, 50):.2f} s p90 {percentile(lat, 90):.2f} s; "
          f"first interim {'-' if first is None else f'{first:.2f} s'} after speech start",
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _run_caption_bot(argv: list[str]) -> int:
    try:
        from roomscribe.bot.worker import run
    except ImportError as exc:
        print(f"roomscribe: the LiveKit caption bot needs the livekit extra: pip install 'roomscribe[livekit]' "
              f"({exc})", file=sys.stderr)
        return 2
    run(argv)
    return 0
