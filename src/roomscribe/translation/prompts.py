"""What an instruction model is asked: the chat messages that translate one caption.

Pure: no model, no I/O. The messages are

1. a system instruction naming both languages, asking for the translation only, and listing
   names to keep as written (the room's glossary);
2. worked examples for the pair, where there are some (`EXAMPLES`): a small model follows
   a shown format and register far better than a described one, and English→Korean is poor
   without them;
3. the speaker's previous sentences with their translations, as earlier turns: the model sees
   what "it" and "that" refer to and keeps its word choices from one caption to the next;
4. the caption itself.

A request can carry the caption's audio too, for a backend that translates speech rather than
text (`whisper`); the others ignore it.

`bench/translation.py` measures each part (bare instruction, with examples, with context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Language names as an instruction model knows them best (English names).
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "ko": "Korean",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ja": "Japanese",
    "zh": "Chinese (Simplified)",
    "ru": "Russian",
    "pl": "Polish",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "id": "Indonesian",
    "th": "Thai",
    "ar": "Arabic",
    "hi": "Hindi",
    "uk": "Ukrainian",
    "sv": "Swedish",
}

# Worked examples per (source, target): meeting sentences, translated by hand. The same source
# sentences serve every target from English, so adding a language is adding its two lines.
_EN_EXAMPLES = (
    "Can everyone see my screen? I'll go through the numbers from last quarter.",
    "Let's move the launch to next Thursday, after Daniel's team finishes the security review.",
)
EXAMPLES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("en", "ko"): tuple(
        zip(
            _EN_EXAMPLES,
            (
                "모두 제 화면 보이시나요? 지난 분기 수치를 살펴보겠습니다.",
                "출시는 다니엘 팀이 보안 검토를 마친 뒤인 다음 주 목요일로 미룹시다.",
            ),
            strict=True,
        )
    ),
    ("en", "es"): tuple(
        zip(
            _EN_EXAMPLES,
            (
                "¿Todos ven mi pantalla? Voy a repasar las cifras del último trimestre.",
                "Pasemos el lanzamiento al próximo jueves, después de que el equipo de Daniel termine la revisión "
                "de seguridad.",
            ),
            strict=True,
        )
    ),
    ("en", "fr"): tuple(
        zip(
            _EN_EXAMPLES,
            (
                "Tout le monde voit mon écran ? Je vais passer en revue les chiffres du dernier trimestre.",
                "Reportons le lancement à jeudi prochain, après que l'équipe de Daniel aura terminé l'audit de "
                "sécurité.",
            ),
            strict=True,
        )
    ),
    ("ko", "en"): (
        (
            "다들 제 화면 보이세요? 지난 분기 숫자부터 보겠습니다.",
            "Can everyone see my screen? Let's start with last quarter's numbers.",
        ),
        (
            "출시는 민준 씨 팀이 보안 검토를 끝낸 다음 주 목요일로 옮기죠.",
            "Let's move the launch to next Thursday, once Minjun's team has finished the security review.",
        ),
    ),
}


def language_name(code: str | None) -> str:
    if code is None:
        return "the speaker's language"
    return LANGUAGE_NAMES.get(code, code)


@dataclass(frozen=True)
class PromptStyle:
    """Which parts of the prompt are used (the benchmark compares them)."""

    examples: bool = True
    context: int = 2  # earlier sentences of the same speaker shown, with their translations
    glossary: bool = True


DEFAULT_STYLE = PromptStyle()


@dataclass(frozen=True)
class TranslationRequest:
    text: str
    source: str | None  # None: not known (the model is told "the speaker's language")
    target: str
    context: tuple[tuple[str, str], ...] = ()  # the speaker's earlier (sentence, translation) pairs
    glossary: tuple[str, ...] = field(default=())  # names and terms to keep as written
    # The caption's speech, 16 kHz mono float32, for a backend that hears it (`needs_audio`);
    # left out of equality and hashing (an array has neither) and of the repr.
    audio: np.ndarray | None = field(default=None, compare=False, repr=False)


def messages(request: TranslationRequest, style: PromptStyle = DEFAULT_STYLE) -> list[dict[str, str]]:
    """The chat messages for one caption, for any OpenAI-shaped chat model."""
    source, target = language_name(request.source), language_name(request.target)
    system = (
        f"You translate live meeting captions from {source} to {target}. "
        f"Reply with the {target} translation of the user's message only: no notes, no quotes, no romanisation. "
        "Captions come from speech recognition: keep the meaning even where a word looks misheard. "
        "Keep names, numbers and product names as written."
    )
    if style.glossary and request.glossary:
        system += " Names and terms in this meeting: " + ", ".join(request.glossary) + "."
    out = [{"role": "system", "content": system}]
    turns: list[tuple[str, str]] = []
    if style.examples:
        turns += EXAMPLES.get((request.source or "", request.target), ())
    if style.context:
        turns += request.context[-style.context :]
    for said, translated in turns:
        out.append({"role": "user", "content": said})
        out.append({"role": "assistant", "content": translated})
    out.append({"role": "user", "content": request.text})
    return out


_QUOTES = {'"': '"', "“": "”", "«": "»", "「": "」", "'": "'"}
_LABELS = ("translation:", "translated:", "번역:", "traducción:", "traduction :", "traduction:")


def clean_reply(reply: str, request: TranslationRequest) -> str:
    """The translation in a model's reply: the first paragraph, without a label or quotes the
    caption did not have."""
    text = reply.strip()
    for label in _LABELS:
        if text.lower().startswith(label):
            text = text[len(label) :].strip()
    text = text.split("\n\n")[0].strip()
    opening = text[:1]
    if opening in _QUOTES and text.endswith(_QUOTES[opening]) and len(text) > 1:
        if not request.text.strip().startswith(opening):
            text = text[1:-1].strip()
    return text


def max_reply_tokens(request: TranslationRequest) -> int:
    """A bound on the reply: generous for the caption's length, so a model that runs on
    cannot hold the queue for long."""
    return min(512, 48 + 2 * len(request.text))
