"""The one parser of stream options every door takes from its clients: language, policy, task,
prompt, and speaker diarization with its hints.

A language is a Whisper code ("en", "ko"), a regional tag ("en-US", "ko_KR" -> the base
code), or a name ("English", "korean", "한국어"); `None`, "", "auto", "multi" and "detect"
mean: detect it. Anything else is an `OptionsError` (a `ValueError`) that names the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from ..engine.clusters import SpeakerHints
from ..engine.policies import POLICIES, PolicyName

Task = Literal["transcribe", "translate"]
TASKS: tuple[Task, ...] = get_args(Task)

AUTO_LANGUAGES = frozenset({"", "auto", "multi", "detect"})

# Whisper's languages by name (as Whisper itself names them), plus a few common aliases,
# so "English" or "Korean" in a client's option or a participant's metadata just works.
LANGUAGE_NAMES: dict[str, str] = {
    "english": "en",
    "chinese": "zh",
    "german": "de",
    "spanish": "es",
    "russian": "ru",
    "korean": "ko",
    "french": "fr",
    "japanese": "ja",
    "portuguese": "pt",
    "turkish": "tr",
    "polish": "pl",
    "catalan": "ca",
    "dutch": "nl",
    "arabic": "ar",
    "swedish": "sv",
    "italian": "it",
    "indonesian": "id",
    "hindi": "hi",
    "finnish": "fi",
    "vietnamese": "vi",
    "hebrew": "he",
    "ukrainian": "uk",
    "greek": "el",
    "malay": "ms",
    "czech": "cs",
    "romanian": "ro",
    "danish": "da",
    "hungarian": "hu",
    "tamil": "ta",
    "norwegian": "no",
    "thai": "th",
    "urdu": "ur",
    "croatian": "hr",
    "bulgarian": "bg",
    "lithuanian": "lt",
    "latin": "la",
    "maori": "mi",
    "malayalam": "ml",
    "welsh": "cy",
    "slovak": "sk",
    "telugu": "te",
    "persian": "fa",
    "latvian": "lv",
    "bengali": "bn",
    "serbian": "sr",
    "azerbaijani": "az",
    "slovenian": "sl",
    "kannada": "kn",
    "estonian": "et",
    "macedonian": "mk",
    "breton": "br",
    "basque": "eu",
    "icelandic": "is",
    "armenian": "hy",
    "nepali": "ne",
    "mongolian": "mn",
    "bosnian": "bs",
    "kazakh": "kk",
    "albanian": "sq",
    "swahili": "sw",
    "galician": "gl",
    "marathi": "mr",
    "punjabi": "pa",
    "sinhala": "si",
    "khmer": "km",
    "shona": "sn",
    "yoruba": "yo",
    "somali": "so",
    "afrikaans": "af",
    "occitan": "oc",
    "georgian": "ka",
    "belarusian": "be",
    "tajik": "tg",
    "sindhi": "sd",
    "gujarati": "gu",
    "amharic": "am",
    "yiddish": "yi",
    "lao": "lo",
    "uzbek": "uz",
    "faroese": "fo",
    "haitian creole": "ht",
    "pashto": "ps",
    "turkmen": "tk",
    "nynorsk": "nn",
    "maltese": "mt",
    "sanskrit": "sa",
    "luxembourgish": "lb",
    "myanmar": "my",
    "tibetan": "bo",
    "tagalog": "tl",
    "malagasy": "mg",
    "assamese": "as",
    "tatar": "tt",
    "hawaiian": "haw",
    "lingala": "ln",
    "hausa": "ha",
    "bashkir": "ba",
    "javanese": "jw",
    "sundanese": "su",
    "cantonese": "yue",
    # aliases
    "mandarin": "zh",
    "burmese": "my",
    "castilian": "es",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "moldavian": "ro",
    "moldovan": "ro",
    "panjabi": "pa",
    "pushto": "ps",
    "sinhalese": "si",
    "valencian": "ca",
    "farsi": "fa",
    "filipino": "tl",
    "한국어": "ko",
    "조선어": "ko",
    "日本語": "ja",
    "中文": "zh",
    "español": "es",
    "français": "fr",
    "deutsch": "de",
}
# ISO codes Whisper spells its own way.
CODE_ALIASES = {"jv": "jw", "iw": "he", "nb": "no"}


class OptionsError(ValueError):
    """An option value a client, job or environment gave that cannot be used."""


def whisper_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the codes the model knows

    return frozenset(_LANGUAGE_CODES)


def parse_language(value: object, what: str = "language") -> str | None:
    """A Whisper language code, or None for detection (see the module's docstring)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise OptionsError(f"{what} must be a language code or name, not {value!r}")
    text = value.strip().lower()
    if text in AUTO_LANGUAGES:
        return None
    if text in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[text]
    code = text.replace("_", "-").split("-")[0]
    code = CODE_ALIASES.get(code, code)
    if code in whisper_languages():
        return code
    where = "" if what == "language" else f"{what}: "
    raise OptionsError(
        f"{where}unknown language {value!r}: not a language Whisper knows (use a code such as "
        "en or ko, a name such as English, or auto)"
    )


def parse_policy(value: object, what: str = "policy") -> PolicyName:
    if isinstance(value, str) and value.strip().lower() in POLICIES:
        return value.strip().lower()  # type: ignore[return-value]
    raise OptionsError(f"unknown {what} {value!r}: {what} must be one of {', '.join(POLICIES)}")


MAX_PROMPT_CHARACTERS = 500


def parse_prompt(value: object, what: str = "prompt") -> str:
    """Names and words to expect (or a sentence of context): text, or a list of words."""
    if value is None:
        return ""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        value = ", ".join(v.strip() for v in value if v.strip())
    if not isinstance(value, str):
        raise OptionsError(f"{what} must be text or a list of words, not {value!r}")
    text = " ".join(value.split())
    if len(text) > MAX_PROMPT_CHARACTERS:
        raise OptionsError(f"{what} is {len(text)} characters; at most {MAX_PROMPT_CHARACTERS}")
    return text


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def parse_flag(value: object, what: str) -> bool:
    """A yes/no option as JSON, a query string or a form sends it."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise OptionsError(f"{what} must be true or false, not {value!r}")


HINT_NAMES = ("num_speakers", "min_speakers", "max_speakers")


def parse_speaker_hints(fields: Mapping[str, object], what: str = "diarize") -> SpeakerHints | None:
    """Whether to tell the voices on a track or file apart (`diarize`), and what is known of
    how many there are (`num_speakers`, or `min_speakers`/`max_speakers`; giving one asks for
    diarization). None when it is not asked for."""
    given = {k: fields.get(k) for k in HINT_NAMES if fields.get(k) not in (None, "")}
    if not parse_flag(fields.get(what), what) and not given:
        return None
    counts: dict[str, int] = {}
    for key, value in given.items():
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise OptionsError(f"{key} must be a whole number, not {value!r}")
        counts[key] = value
    try:
        return SpeakerHints(**counts)
    except ValueError as exc:
        raise OptionsError(str(exc)) from None


def parse_task(value: object, what: str = "task") -> Task:
    """`transcribe` (captions as spoken; the default) or `translate` (Whisper's own, into English)."""
    if value is None or value == "":
        return "transcribe"
    if isinstance(value, str) and value.strip().lower() in TASKS:
        return value.strip().lower()  # type: ignore[return-value]
    raise OptionsError(f"unknown {what} {value!r}: {what} must be transcribe or translate (into English)")


__all__ = [
    "AUTO_LANGUAGES",
    "HINT_NAMES",
    "OptionsError",
    "POLICIES",
    "PolicyName",
    "TASKS",
    "parse_prompt",
    "Task",
    "parse_language",
    "parse_policy",
    "parse_task",
    "parse_flag",
    "parse_speaker_hints",
]
