"""Text layer: tokens to words, joining words, sentence ends, per-language spacing.

Korean is written with spaces between words (eojeol), so words split on spaces
as in English; but a Hangul syllable may span several byte-level tokens, so
tokens are grouped into whole characters before anything else, and words are
joined by concatenation (each word keeps its own leading space), never by
inserting spaces. Languages written without spaces split per character group.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from .events import Word

# Languages written without spaces between words.
CJK_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})

SENTENCE_END = ".?!…。？！"
_CLOSERS = "\"'”’)]}」』"
_EN_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jr",
        "sr",
        "prof",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "mt",
        "co",
        "inc",
    }
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?…。，、？！%)\]}])")
_CLOSING_PUNCT = re.compile(r"\s*[,.;:!?…。，、？！%)\]}]+")  # shown glued to the word before it
_MULTISPACE = re.compile(r"\s{2,}")
_CJK_CHAR = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef\u0e00-\u0e7f]"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<={_CJK_CHAR})\s+(?={_CJK_CHAR})")


def is_punctuation(text: str) -> bool:
    text = text.strip()
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def is_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f" for ch in text)


def character_groups(tokens: Sequence[int], decode: Callable[[list[int]], str]) -> list[tuple[str, list[int]]]:
    """Group token indices so that each group decodes to whole characters."""
    groups: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for i in range(len(tokens)):
        pending.append(i)
        text = decode([tokens[j] for j in pending])
        if "\ufffd" not in text or i == len(tokens) - 1:
            groups.append((text.replace("\ufffd", ""), pending))
            pending = []
    return groups


def tokens_to_words(
    tokens: Sequence[int],
    starts: Sequence[float],
    ends: Sequence[float],
    probs: Sequence[float],
    decode: Callable[[list[int]], str],
    language: str | None,
    offset: float = 0.0,
) -> list[Word]:
    """Turn decoded tokens with per-token times into words on the audio clock."""
    spaced = language not in CJK_LANGUAGES
    words: list[Word] = []
    for text, idx in character_groups(tokens, decode):
        if not text:
            continue
        start, end = starts[idx[0]] + offset, ends[idx[-1]] + offset
        prob = float(min(probs[j] for j in idx)) if len(probs) else 1.0
        if spaced:  # a piece without a leading space continues the word before it
            attach = bool(words) and not text.startswith(" ")
        else:
            attach = bool(words) and is_punctuation(text)
        if attach or (words and is_closing_punctuation(text)):
            glue(words, Word(text, start, end, prob))
        else:
            words.append(Word(text, start, end, prob))
    return words


def is_closing_punctuation(text: str) -> bool:
    """Punctuation that is shown glued to the word before it (", " "." ...), even when it came
    as a piece of its own."""
    return bool(_CLOSING_PUNCT.fullmatch(text))


def glue(words: list[Word], piece: Word) -> None:
    """Join `piece` to the last word (a continuation, or closing punctuation)."""
    last = words[-1]
    text = piece.text.lstrip() if is_closing_punctuation(piece.text) else piece.text
    words[-1] = Word(last.text + text, last.start, max(last.end, piece.end), min(last.probability, piece.probability))


def append_words(words: list[Word], new: Sequence[Word]) -> None:
    """Extend committed words with newly committed ones: punctuation committed apart from its
    word (a commit boundary fell between them) joins that word, as the text shows it."""
    for word in new:
        if words and is_closing_punctuation(word.text):
            glue(words, word)
        else:
            words.append(word)


def join_words(words: Sequence[Word | str], language: str | None = None) -> str:
    """Join words into display text: concatenated, tidied, no leading space."""
    raw = "".join(w.text if isinstance(w, Word) else w for w in words)
    return tidy_text(raw, language)


def tidy_text(text: str, language: str | None = None) -> str:
    text = _MULTISPACE.sub(" ", text.replace("\n", " "))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    if language in CJK_LANGUAGES:
        text = _SPACE_BETWEEN_CJK.sub("", text)
    return text.strip()


def ends_sentence(word: str, language: str | None = None, next_word: str | None = None) -> bool:
    """Whether `word` closes a sentence (Korean/CJK full stops included)."""
    core = word.strip().rstrip(_CLOSERS)
    if not core or core[-1] not in SENTENCE_END:
        return False
    if core[-1] == "." and language in (None, "en"):
        stem = core[:-1].lower()
        if stem in _EN_ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
            return False
        if next_word is not None and next_word.strip()[:1].islower():
            return False
    if core[-1] == "." and len(core) > 1 and core[-2].isdigit() and next_word and next_word.strip()[:1].isdigit():
        return False
    return True


def split_sentences(text: str, language: str | None = None) -> list[str]:
    """Split display text into sentences, keeping punctuation with its sentence."""
    if language in CJK_LANGUAGES:
        parts = re.findall(rf"[^{SENTENCE_END}]+[{SENTENCE_END}]+[{re.escape(_CLOSERS)}]*|[^{SENTENCE_END}]+$", text)
        return [p.strip() for p in parts if p.strip()]
    tokens = text.split(" ")
    sentences, current = [], []
    for i, tok in enumerate(tokens):
        if not tok:
            continue
        current.append(tok)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if ends_sentence(tok, language, nxt):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def last_sentence_end(words: Sequence[Word], language: str | None = None) -> int:
    """Index just past the last word that ends a sentence, or 0 if none does."""
    for i in range(len(words) - 1, -1, -1):
        nxt = words[i + 1].text if i + 1 < len(words) else None
        if ends_sentence(words[i].text, language, nxt):
            return i + 1
    return 0


def normalize_word(text: str) -> str:
    """A comparison key for agreement between hypotheses: case and punctuation folded."""
    return "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P")).strip()


def tokens_per_word(
    tokens: Sequence[int], decode: Callable[[list[int]], str], language: str | None, n_words: int
) -> list[int]:
    """How many tokens each word of `tokens_to_words(tokens, ...)` spans."""
    spaced = language not in CJK_LANGUAGES
    counts: list[int] = []
    for text, idx in character_groups(tokens, decode):
        if not text:
            if counts:
                counts[-1] += len(idx)
            continue
        new_word = (text.startswith(" ") or not counts) if spaced else (not counts or not is_punctuation(text))
        if new_word:
            counts.append(len(idx))
        else:
            counts[-1] += len(idx)
    if len(counts) != n_words:  # should not happen; keep the window cut conservative
        counts = (counts + [0] * n_words)[:n_words]
    return counts
