"""`roomscribe transcribe FILE`: offline, or played through the streaming engine as live."""

from __future__ import annotations

import sys

from .errors import EXIT_BAD_INPUT, EXIT_NO_MODEL, fail


def transcribe(args) -> int:
    from ..audio import AudioFileError, load_audio
    from ..session.options import OptionsError, parse_language, parse_prompt, parse_speaker_hints

    try:
        args.language = parse_language(args.language)
        args.prompt = parse_prompt(args.prompt, "--prompt")
        args.speakers = parse_speaker_hints(
            {
                "diarize": args.diarize,
                "num_speakers": args.num_speakers,
                "min_speakers": args.min_speakers,
                "max_speakers": args.max_speakers,
            }
        )
    except OptionsError as exc:
        return fail(str(exc).replace("_speakers", "-speakers"), EXIT_BAD_INPUT)
    if args.server:
        from .remote import transcribe_remote

        return transcribe_remote(args)
    if args.speakers is not None:
        from ..diarization.extras import DiarizationUnavailableError, check_hints, require_packages

        try:
            check_hints(args.diarizer, args.speakers)
            require_packages(args.diarizer)
        except (DiarizationUnavailableError, ValueError) as exc:
            return fail(str(exc), EXIT_BAD_INPUT)
    from ..engine import Engine, ModelNotFoundError
    from . import engine_config

    try:
        audio = load_audio(args.file)
    except AudioFileError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        engine = Engine(engine_config(args))
    except ModelNotFoundError as exc:
        return fail(str(exc), EXIT_NO_MODEL)
    if args.simulate:
        return _simulate(engine, audio, args)
    return _offline(engine, audio, args)


def _offline(engine, audio, args) -> int:
    from ..session.formats import render, segment_captions, transcript_document
    from .progress import ProgressBar

    bar = ProgressBar(enabled=sys.stderr.isatty())
    result = engine.transcribe(
        audio,
        language=args.language,
        beam_size=args.beam_size,
        task=args.task,
        progress=bar.update,
        initial_prompt=args.prompt or None,
        speakers=args.speakers,
    )
    bar.close()
    doc = transcript_document(result)
    sys.stdout.write(render(segment_captions(result.segments), args.format, doc))
    print(
        f"roomscribe: {result.duration:.1f} s of audio in {result.processing_time:.1f} s "
        f"(RTF {result.processing_time / max(result.duration, 1e-9):.3f}), language {result.language}",
        file=sys.stderr,
    )
    return 0


def _simulate(engine, audio, args) -> int:
    from ..engine import StreamConfig
    from ..engine.clusters import SpeakerHints
    from ..engine.simulation import simulate
    from ..session import CaptionBuilder
    from ..session.formats import render
    from ..stats import percentile
    from .live_view import LiveView

    try:
        config = StreamConfig(
            policy=args.policy,
            language=args.language,
            task=args.task,
            frame_threshold=args.frame_threshold,
            min_chunk_seconds=args.min_chunk,
            prompt=args.prompt,
            diarize=args.speakers is not None,
            speakers=args.speakers or SpeakerHints(),
        )
    except ValueError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    view = LiveView(sys.stdout, args.format)
    captions = CaptionBuilder("")
    finals = []

    def show(event) -> None:
        caption = captions.caption(event)
        if caption is not None:
            view(caption)
            if caption.final and caption.text:
                finals.append(caption)

    result = simulate(engine, audio, config, mode=args.clock, on_event=show)
    view.close()
    if args.format in ("srt", "vtt", "rttm"):
        sys.stdout.write(render(finals, args.format))
    lat = result.final_word_latencies()
    first = result.first_interim_delay()
    print(
        f"roomscribe: policy {args.policy}, clock {args.clock}: {result.audio_seconds:.1f} s audio, "
        f"compute {result.compute_seconds:.1f} s (RTF {result.rtf:.2f}), {result.decodes} decodes; "
        f"final latency (word end to final) p50 {percentile(lat, 50):.2f} s p90 {percentile(lat, 90):.2f} s; "
        f"first interim {'-' if first is None else f'{first:.2f} s'} after speech start",
        file=sys.stderr,
    )
    return 0
