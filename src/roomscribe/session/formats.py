"""Transcripts as text, json, srt and vtt, rendered from captions.

Text, srt and vtt show one language: the spoken text, or with `language` a translation (a
caption without one in that language shows its own text); json carries every translation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict

from ..engine.text import tidy_text
from .caption import Caption

FORMATS = ("text", "json", "srt", "vtt", "rttm")
# The one table of what each format is served as ("txt" is how downloads name "text").
MEDIA_TYPES = {
    "text": "text/plain",
    "txt": "text/plain",
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "rttm": "text/plain",
}


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def caption_text(caption: Caption, language: str | None = None) -> str:
    """The caption's text in `language`: its translation there, else (and for None) what was said."""
    if language is None:
        return caption.text
    return caption.translations.get(language, caption.text)


def _label(caption: Caption, speakers: bool, language: str | None = None) -> str:
    """The caption's text (in `language`) after who said it: the participant, "caller (S2)"
    for a voice within a participant's track, "S2" for a voice in a file."""
    text = caption_text(caption, language)
    if caption.speaker is not None:
        who = f"{caption.participant} ({caption.speaker})" if speakers and caption.participant else caption.speaker
        return f"{who}: {text}"
    if not speakers or not caption.participant:
        return text
    return f"{caption.participant}: {text}"


def to_rttm(captions: Iterable[Caption], recording: str = "audio") -> str:
    """Speaker turns in RTTM (NIST): one line per caption, its voice or its participant."""
    lines = []
    for c in captions:
        who = c.speaker if not c.participant else c.participant if c.speaker is None else f"{c.participant}:{c.speaker}"
        if who is None or c.end <= c.start:
            continue
        name = "".join(ch if not ch.isspace() else "_" for ch in who)
        lines.append(f"SPEAKER {recording} 1 {c.start:.3f} {c.end - c.start:.3f} <NA> <NA> {name} <NA> <NA>")
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(captions: Iterable[Caption], speakers: bool = False, language: str | None = None) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_label(c, speakers, language)}\n"
        for i, c in enumerate(captions, 1)
    ]
    return "\n".join(blocks)


def to_vtt(captions: Iterable[Caption], speakers: bool = False, language: str | None = None) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{_label(c, speakers, language)}\n" for c in captions]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_text(captions: Sequence[Caption], speakers: bool = False, language: str | None = None) -> str:
    return "\n".join(_label(c, speakers, language) for c in captions) + ("\n" if captions else "")


def render(
    captions: Sequence[Caption],
    fmt: str,
    document: dict | None = None,
    speakers: bool = False,
    language: str | None = None,
) -> str:
    """`captions` as `fmt`; json is `document` when given, else the captions' segments.
    `speakers` labels each caption with who said it; `language` shows text, srt and vtt in
    that translation (None: as spoken). json keeps every language, rttm has no text."""
    if fmt == "srt":
        return to_srt(captions, speakers, language)
    if fmt == "vtt":
        return to_vtt(captions, speakers, language)
    if fmt == "rttm":
        return to_rttm(captions)
    if fmt == "json":
        doc = document if document is not None else {"segments": [c.as_dict() for c in captions]}
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    return to_text(captions, speakers, language)


def segment_captions(segments: Iterable, participant: str = "", language: str | None = None) -> list[Caption]:
    """Finished segments (a file's offline segments, a server's JSON segments) as captions,
    in `language` (what their text is written in), with the translations JSON segments carry."""
    out = []
    for i, s in enumerate(segments):
        get = s.get if isinstance(s, dict) else lambda key, s=s: getattr(s, key)
        out.append(
            Caption(
                participant=participant,
                segment_id=str(i),
                text=get("text").strip(),
                final=True,
                start=float(get("start")),
                end=float(get("end")),
                language=language,
                speaker=get("speaker") if isinstance(s, dict) else getattr(s, "speaker", None),
                translations=dict(s.get("translations") or {}) if isinstance(s, dict) else {},
            )
        )
    return out


def translated_text(captions: Sequence[Caption], language: str) -> str:
    """The whole transcript in `language`: each segment's translation, or its own text."""
    return tidy_text(" ".join(caption_text(c, language) for c in captions), language)


def transcript_document(result, captions: Sequence[Caption] | None = None, languages: Sequence[str] = ()) -> dict:
    """A file's transcript (`OfflineTranscript`) as JSON; with speakers where it was diarized:
    `speaker` on segments and words, a `speakers` summary, `total_speakers`, `has_diarization`.
    With `languages` (translated `captions`, one per segment, from `segment_captions`): each
    segment's `translations` and the whole text in each language as `translations`."""
    from ..diarization.files import speakers_summary

    doc = {
        "language": result.language,
        "language_probability": round(result.language_probability, 3),
        "duration": round(result.duration, 3),
        "processing_time": round(result.processing_time, 3),
        "text": result.text,
        "segments": [{"id": i, **asdict(s)} for i, s in enumerate(result.segments)],
    }
    if languages and captions is not None:
        for seg, caption in zip(doc["segments"], captions, strict=True):
            seg["translations"] = dict(caption.translations)
        doc["translations"] = {language: translated_text(captions, language) for language in languages}
    if result.turns is None:
        for seg in doc["segments"]:
            seg.pop("speaker", None)
        doc["has_diarization"] = False
        return doc
    summary = speakers_summary(result.segments)
    doc.update(speakers=summary, total_speakers=len(summary), has_diarization=True)
    return doc
