"""`roomscribe transcribe FILE`: offline, or played through the streaming engine as live.

Offline, `--translate-to ko,fr` translates each segment once the file is transcribed, through
the process's one translation queue: json gets `translations` per segment; text, srt and vtt
show the spoken text (or `--subtitle-language`'s translation), and with `-o OUT.srt` each
language is written next to it as `OUT.ko.srt`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import EXIT_BAD_INPUT, EXIT_NO_MODEL, fail

EXIT_FAILED = 1  # the work itself failed (every translation of the file)
SUBTITLE_FORMATS = ("text", "srt", "vtt")  # one language each: as spoken, or a translation


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
    refused = _translation_options(args)
    if refused:
        return fail(refused, EXIT_BAD_INPUT)
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
    if args.translate_to:
        from ..translation import shared_translation, translation_unavailable

        if shared_translation() is None:
            return fail(translation_unavailable() or "translation is off", EXIT_BAD_INPUT)
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


def _translation_options(args) -> str | None:
    """Parse `--translate-to` and `--subtitle-language` into `args` (a tuple of languages and
    a language or None); what is wrong with them, if anything."""
    from ..session.control import ControlError
    from ..session.options import OptionsError, parse_language
    from ..session.translation import TranslationTargets

    try:
        args.translate_to = TranslationTargets(",".join(args.translate_to or ())).languages
    except ControlError as exc:
        return "--translate-to: " + str(exc).removeprefix("languages: ").removeprefix("translation language: ")
    try:
        args.subtitle_language = parse_language(args.subtitle_language, "--subtitle-language")
    except OptionsError as exc:
        return str(exc)
    if args.subtitle_language is not None:
        if args.subtitle_language not in args.translate_to:
            asked = ", ".join(args.translate_to) or "none"
            return f"--subtitle-language {args.subtitle_language} is not among --translate-to ({asked}): add it there"
        if args.format not in SUBTITLE_FORMATS:
            return f"--subtitle-language is for --format text, srt or vtt, not {args.format}"
        if args.output:
            return "--subtitle-language picks what is printed; with -o every language has its own file"
    if args.translate_to:
        if args.simulate or args.server:
            return "--translate-to translates offline transcripts: leave out " + (
                "--simulate" if args.simulate else "--server"
            )
        if args.format not in ("json", *SUBTITLE_FORMATS):
            return f"--translate-to needs --format json, text, srt or vtt, not {args.format}"
    if args.output and (args.simulate or args.server):
        return "-o writes offline transcripts: leave out " + ("--simulate" if args.simulate else "--server")
    return None


def _translate(result, args, engine=None, audio=None) -> tuple[list, str | None, bool]:
    """The file's segments as captions, translated into `--translate-to` (in place, in order,
    through the process's one queue); what went wrong where translations failed, and whether
    every one of them did."""
    import asyncio

    from ..session.formats import segment_captions
    from ..session.translation import TranslationTargets, translate_captions
    from ..translation import shared_translation

    captions = segment_captions(result.segments, language="en" if args.task == "translate" else result.language)
    if not args.translate_to:
        return captions, None, False
    service = shared_translation()
    targets = TranslationTargets(args.translate_to)
    print(
        f"roomscribe: translating {len(captions)} segment(s) into {', '.join(targets.languages)}",
        file=sys.stderr,
    )
    try:
        # The model loads first, so that the first segment's timeout does not count the load.
        load = getattr(service.translator, "load", None)
        if load is not None:
            load()
        use_engine = getattr(service.translator, "use_engine", None)
        if use_engine is not None:
            use_engine(engine)  # whisper: a second decode on this file's model, never another one
        asyncio.run(translate_captions(service, captions, targets, audio=audio))
    finally:
        service.close()
    needed = [(c, t) for c in captions if c.text for t in targets.languages if t != c.language]
    missing = sum(1 for c, t in needed if t not in c.translations)
    if not missing:
        return captions, None, False
    error = f"{missing} of {len(needed)} translations failed: {service.last_error or 'no reply'}"
    return captions, error, missing == len(needed)


def _offline(engine, audio, args) -> int:
    from ..session.formats import render, transcript_document
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
    from ..translation import TranslationUnavailableError

    try:
        captions, failed, all_failed = _translate(result, args, engine, audio)
    except TranslationUnavailableError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    if all_failed:
        return fail(failed, EXIT_FAILED)
    if failed:
        print(f"roomscribe: warning: {failed}; those segments keep their spoken text", file=sys.stderr)
    doc = transcript_document(result, captions, args.translate_to)
    if args.output:
        out = Path(args.output)
        files = {out: render(captions, args.format, doc)}
        if args.format in SUBTITLE_FORMATS:
            for language in args.translate_to:
                files[out.with_name(f"{out.stem}.{language}{out.suffix}")] = render(
                    captions, args.format, language=language
                )
        try:
            for path, text in files.items():
                path.write_text(text, encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
        print(f"roomscribe: wrote {', '.join(map(str, files))}", file=sys.stderr)
    else:
        sys.stdout.write(render(captions, args.format, doc, language=args.subtitle_language))
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
    finals = {}  # segment id -> final caption: a revised final replaces (or retracts) it

    def show(event) -> None:
        caption = captions.caption(event)
        if caption is not None:
            view(caption)
            if caption.final and caption.text:
                finals[caption.segment_id] = caption
            elif caption.final:
                finals.pop(caption.segment_id, None)

    result = simulate(engine, audio, config, mode=args.clock, on_event=show)
    view.close()
    if args.format in ("srt", "vtt", "rttm"):
        sys.stdout.write(render(sorted(finals.values(), key=lambda c: c.start), args.format))
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
