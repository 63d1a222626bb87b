"""Checks that keep text off silence, noise and music, and stop repetition loops.

A decoder loop and a speaker who repeats themselves read the same as text ("it was the best of
times, it was the worst of times"; a sentence said twice). They differ in the audio: a speaker
takes about as long to say the words again, while the decoder's extra copy has no audio of its
own, so the alignment squeezes it into a sliver of the window or past its end. The checks here
cut text only where the alignment says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .events import Word
from .text import ends_sentence, normalize_word
from .whisper import DecodeResult, compression_ratio

# A copy heard in at most this share of the time its original took has no audio of its own.
SQUEEZE = 0.35
# Tokens aligned this close to the end of the audio (or past it) were not heard in it.
END_MARGIN_SECONDS = 0.06
# The most words an echo of the last words said (see `cut_echo`) is looked for over.
ECHO_WORDS = 8
# An echo may follow this many stray words (the end of a squeezed loop: "To | say a few words
# ..."), when it is this many words or more and lies where its words were first said.
ECHO_LEAD_WORDS = 2
ECHO_AFTER_LEAD_WORDS = 3
# Faster than anyone speaks, in letters per second: alphabetic scripts, and syllabic or
# logographic ones (a Hangul block or a kanji is a syllable). Text aligned faster than this
# was not all heard.
FASTEST_LETTERS_PER_SECOND = 25.0
FASTEST_SYLLABLES_PER_SECOND = 10.0


def fastest_seconds(text: str) -> float:
    """The least time anyone takes to say `text`."""
    seconds = 0.0
    for ch in text:
        if not ch.isalnum():
            continue
        if ord(ch) < 0x2E80:  # Latin, Greek, Cyrillic, Arabic, Hebrew, Indic...
            seconds += 1.0 / FASTEST_LETTERS_PER_SECOND
        else:  # CJK, kana, Hangul
            seconds += 1.0 / FASTEST_SYLLABLES_PER_SECOND
    return seconds


@dataclass(frozen=True)
class Timing:
    """Where each token of prefix + generated tokens lies in the window (seconds)."""

    starts: Sequence[float]
    ends: Sequence[float]
    audio_seconds: float

    @classmethod
    def of(cls, result: DecodeResult) -> Timing:
        return cls(result.token_starts, result.token_ends, result.window_seconds)

    def past_audio(self, k: int) -> bool:
        return self.starts[k] >= self.audio_seconds - END_MARGIN_SECONDS

    def span(self, a: int, b: int) -> float:
        return max(0.0, self.ends[b - 1] - self.starts[a])

    def unheard_from(self, a: int, b: int, like_span: float) -> int | None:
        """Where tokens [a, b), one copy of a repeated pattern, stop having audio of their own:
        the first of them aligned at the end of the audio (the speaker may have begun the copy,
        the decoder finished it), or `a` when the copy is squeezed into a sliver of the time
        the longest copy takes (`like_span`). None: the copy was spoken."""
        if b > len(self.starts):
            return None  # no alignment for them: say nothing
        for k in range(a, b):
            if self.past_audio(k):
                return k
        if self.span(a, b) <= SQUEEZE * like_span:
            return a
        return None


def _copies_needed(length: int) -> int:
    # A short pattern (a word, a number) must repeat more often before it can be a loop.
    return 4 if length <= 2 else 3 if length <= 4 else 2


def trim_repetition(
    tokens: Sequence[int], prefix: Sequence[int], timing: Timing, decode=None, max_pattern: int = 48
) -> list[int]:
    """Positions of `tokens` to keep where a decoder loop (a pattern repeated back to back)
    is found: the copies with audio of their own stay, wherever they are among the copies
    (the alignment may give the audio to the last); the copies without go, and so does
    whatever the decoder wrote after the loop. A pattern every copy of which was spoken is a
    speaker repeating themselves and stays whole. Two copies are enough when together they
    are aligned in less time than anyone takes to say them ("letterpress letterpress" on
    the audio of one): then the copy with the most audio stays.

    The check runs over prefix + tokens, so a loop that starts in committed text counts too.
    """
    seq = [*prefix, *tokens]
    n, p = len(seq), len(prefix)
    aligned = n <= len(timing.starts)
    for i in range(n):
        for length in range(1, min(max_pattern, (n - i) // 2) + 1):
            if i + 2 * length <= p:
                continue  # a repeat wholly inside the committed prefix is history
            pattern = seq[i : i + length]
            copies = [i]
            while copies[-1] + 2 * length <= n and seq[copies[-1] + length : copies[-1] + 2 * length] == pattern:
                copies.append(copies[-1] + length)
            if len(copies) < 2:
                continue
            if len(copies) < _copies_needed(length):
                if not (aligned and decode is not None):
                    continue
                end = copies[-1] + length
                if timing.span(copies[0], end) >= fastest_seconds(decode(seq[copies[0] : end])):
                    continue
                best = max(copies, key=lambda c: timing.span(c, c + length))
                drop = {k for c in copies if c != best for k in range(c, c + length)}
                return [k - p for k in range(p, n) if k not in drop]
            cut = _loop_cut(p, timing, [(c, c + length) for c in copies], length, i)
            if cut is None:
                continue
            if aligned:
                # Where one copy ends and the next begins is the decoder's choice. The loop is
                # cut where the fewest copies are cut partway and its copies keep the most
                # audio: "design. To say | a few words ... design. To" keeps the spoken copy
                # without its first words, "To say a few words ... design." keeps it whole.
                end = copies[-1] + length
                while end < n and seq[end] == seq[end - length]:
                    end += 1  # a last copy begun
                phases = [_loop_cut(p, timing, _copy_spans(i, end, length, s), length, i) for s in range(length)]
                cut = max(
                    (c for c in phases if c is not None), key=lambda c: c.score(seq, p, timing, decode), default=cut
                )
            return [k - p for k in cut.kept]
    return list(range(len(tokens)))


def _copy_spans(start: int, end: int, length: int, phase: int) -> list[tuple[int, int]]:
    """The copies of a loop over [start, end) when its first whole copy begins `phase` tokens
    in: the part before it is a copy's end, and the last may be a copy's start."""
    bounds = [start, *range(start + phase, end, length), end]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass
class _LoopCut:
    kept: list[int]  # positions in prefix + tokens
    start: int  # where the loop begins
    partway: list[tuple[int, int]]  # copies cut after their start: where, and where they end

    def score(self, seq: Sequence[int], p: int, timing: Timing, decode=None) -> tuple[int, float, bool]:
        """The fewest copies cut partway (only the last one spoken may be, by the window's
        end); then the most audio the new tokens kept are aligned to; then whether what is
        kept of the loop opens a sentence (the decoder loops over sentences, and the first
        word of a spoken copy may be aligned in no time)."""
        heard = sum(timing.ends[k] - timing.starts[k] for k in self.kept if k >= p and not timing.past_audio(k))
        # A copy the speaker began and the decoder finished; a full stop past the audio is not that.
        partway = sum(
            decode is None or any(any(ch.isalnum() for ch in decode([seq[k]])) for k in range(cut, end))
            for cut, end in self.partway
        )
        first = next((k for k in self.kept if k >= self.start), None)
        opens = decode is not None and first is not None and (first == 0 or ends_sentence(decode([seq[first - 1]])))
        return -partway, round(heard, 3), opens


def _loop_cut(p: int, timing: Timing, copies: list[tuple[int, int]], length: int, start: int) -> _LoopCut | None:
    """What stays of a loop with these `copies` ([start, end) each; at either end a part of
    one) of a `length`-token pattern that begins at `start`: what comes before it, and the
    copies with audio of their own. None when every copy has its own (a speaker repeating)."""
    aligned = copies[-1][1] <= len(timing.starts)
    longest = max(timing.span(a, b) for a, b in copies) if aligned else 0.0
    kept = list(range(p, max(p, start)))
    looped, partway = False, []
    for a, b in copies:
        if b <= p:
            continue  # committed
        cut = None if a < p else timing.unheard_from(a, b, longest * (b - a) / length)
        looped |= cut is not None
        if cut is not None and cut > a:
            partway.append((cut, b))
        kept.extend(range(max(a, p), b if cut is None else cut))
    return _LoopCut(kept, max(p, start), partway) if looped else None


def cut_unheard_tail(
    tokens: Sequence[int], prefix: Sequence[int], decode, timing: Timing, kept: list[int]
) -> list[int]:
    """Drop the words at the end that begin where the audio ends: the decoder went on past
    what was said (punctuation after a heard word stays)."""
    p, cut = len(prefix), len(kept)
    if p + len(tokens) > len(timing.starts):
        return kept
    for k in range(len(kept) - 1, -1, -1):
        if not timing.past_audio(p + kept[k]):
            break
        if decode([tokens[kept[k]]]).startswith(" "):
            cut = k
    return kept[:cut]


def cut_squeezed_runs(
    tokens: Sequence[int], prefix: Sequence[int], decode, timing: Timing, kept: list[int], min_words: int = 3
) -> list[int]:
    """Drop runs of `min_words` or more new words in a row, each aligned in under half the
    time anyone takes to say it (a sentence's second copy squeezed into an instant): they
    have no audio of their own. One such word alone is common (the alignment is coarse)."""
    p = len(prefix)
    if p + len(tokens) > len(timing.starts):
        return kept
    words = _word_spans(tokens, kept, decode)
    squeezed = [
        timing.span(p + kept[a], p + kept[b - 1] + 1)
        < 0.5 * fastest_seconds(decode([tokens[kept[j]] for j in range(a, b)]))
        for a, b in words
    ]
    drop: set[int] = set()
    run: list[int] = []
    for w, flag in enumerate([*squeezed, False]):
        if flag:
            run.append(w)
            continue
        if len(run) >= min_words:
            drop.update(j for r in run for j in range(*words[r]))
        run = []
    return [k for j, k in enumerate(kept) if j not in drop]


def _word_token_count(tokens: Sequence[int], decode, words: int) -> int:
    """How many of `tokens` (starting at a word start) make up their first `words` words."""
    seen = 0
    for k, token in enumerate(tokens):
        if decode([token]).startswith(" "):
            seen += 1
            if seen > words:
                return k
    return len(tokens)


def cut_restart(
    tokens: Sequence[int], prefix: Sequence[int], decode, timing: Timing, kept: list[int], min_words: int = 3
) -> list[int]:
    """Cut where the decoder starts the window's committed text over: the same first words
    again (case and punctuation folded) with no audio of their own."""
    head = [normalize_word(w) for w in decode(list(prefix)).split()][:min_words]
    if len(head) < min_words or not all(head):
        return kept
    head_tokens = _word_token_count(prefix, decode, min_words)
    head_span = timing.span(0, head_tokens) if head_tokens <= len(timing.starts) else 0.0
    p = len(prefix)
    for j in range(1, len(kept)):
        if not decode([tokens[kept[j]]]).startswith(" "):
            continue
        following = [tokens[k] for k in kept[j : j + 4 * min_words]]
        words = [normalize_word(w) for w in decode(following).split()]
        if words[:min_words] != head:
            continue
        k = _word_token_count(following, decode, min_words)
        unheard = timing.unheard_from(p + kept[j], p + kept[j + k - 1] + 1, head_span)
        if unheard is not None:
            return [i for i in kept[: j + k] if p + i < unheard]
    return kept


def squeezed_last_word(tokens: Sequence[int], starts: Sequence[float], ends: Sequence[float], decode) -> int:
    """How many of `tokens` at the end make up a last word (with its punctuation) aligned in
    under half the time anyone takes to say it, or 0: its audio lies after where it is aligned
    (the decoder's next copy of it took that audio), so a window cut after it cuts the word."""
    words = _word_spans(tokens, range(len(tokens)), decode)
    if not words or len(ends) < len(tokens):
        return 0
    a, b = words[-1]
    if ends[b - 1] - starts[a] < 0.5 * fastest_seconds(decode(list(tokens[a:b]))):
        return b - a
    return 0


def _word_spans(tokens: Sequence[int], positions: Sequence[int], decode) -> list[tuple[int, int]]:
    """[first, end) indexes into `positions` of each word the tokens there make up (a
    token with a leading space starts a word)."""
    spans: list[tuple[int, int]] = []
    for j, k in enumerate(positions):
        if not spans or decode([tokens[k]]).startswith(" "):
            spans.append((j, j + 1))
        else:
            spans[-1] = (spans[-1][0], j + 1)
    return spans


def cut_echo(
    tokens: Sequence[int],
    prefix: Sequence[int],
    decode,
    timing: Timing,
    kept: list[int],
    said: Sequence[Word],
    offset: float,
    max_words: int = ECHO_WORDS,
) -> list[int]:
    """Drop the new words that open with a copy of the last words said (`said`: committed
    words on the stream clock, in the window's prefix or before the window, which starts at
    `offset` seconds) when the copy has no audio of its own. At a commit boundary or just
    after a window cut the decoder often says the committed words again ("by | by means",
    a whole sentence after a cut). Such a copy ends no more than a sliver after the words
    first ended, or is squeezed into a sliver of the time they took, or takes the prefix's
    audio and leaves the prefix's copy squeezed. A copy of three words or more may follow a
    word or two the decoder left of a squeezed loop, when it lies where its words were first
    said. A speaker who repeats words takes about as long again, after the first time."""
    p = len(prefix)
    if not kept or not said or p + len(tokens) > len(timing.starts):
        return kept
    if not decode([tokens[kept[0]]]).startswith(" "):
        return kept  # the first new token carries on the prefix's last word
    words = _word_spans(tokens, kept, decode)[: max_words + ECHO_LEAD_WORDS]  # an echo is looked for at the head only
    new = [normalize_word(decode([tokens[kept[j]] for j in range(a, b)])) for a, b in words]
    old = [normalize_word(w.text) for w in said]
    prefix_words = _word_spans(prefix, range(p), decode) if p else []
    for lead in range(ECHO_LEAD_WORDS + 1):
        shortest = 1 if lead == 0 else ECHO_AFTER_LEAD_WORDS
        for k in range(min(max_words, len(old), len(new) - lead), shortest - 1, -1):
            if old[-k:] != new[lead : lead + k] or not all(new[lead : lead + k]):
                continue
            first_span = said[-1].end - said[-k].start
            if first_span <= 0:
                continue
            end = words[lead + k - 1][1]
            a, b = p + kept[words[lead][0]], p + kept[end - 1] + 1
            sliver = SQUEEZE * first_span
            # Aligned where the words were first said: the same words on the same audio.
            echo = offset + timing.ends[b - 1] <= said[-1].end + sliver
            if lead == 0 and not echo:
                echo = timing.span(a, b) <= sliver
                if not echo and len(prefix_words) >= k:
                    # The copy took the audio: then the prefix's own copy has none left.
                    a, b = prefix_words[-k][0], prefix_words[-1][1]
                    echo = timing.span(a, b) <= SQUEEZE * first_span
            if echo:
                return kept[end:]
    return kept


# A decode that ends this much speech (by the VAD) before its window does did not hear the
# rest: Whisper skips what repeats its own prefix or prompt (a sentence said twice: the second
# copy is never decoded).
UNHEARD_SPEECH_SECONDS = 1.0
UNHEARD_MARGIN_SECONDS = 0.3  # after a word heard: its end as aligned comes early


@dataclass
class QualityGate:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    # A guess on what is probably not speech: music the VAD let through comes out as "I'm not
    # sure if I can ..." or "I'm not going to be able to do it." at a mean log-probability of
    # -1.8 to -5 with a no-speech probability of 0.28 to 0.5 (under Whisper's 0.6). Of 2,368
    # decodes of speech (read, and meetings with overlap and noise), none of 1.5 s or more
    # fell in this band but four of a meeting's noises, heard as Hebrew, German or "I'm in
    # your mind." Shorter windows commit nothing by themselves (`first_commit_seconds`).
    guess_logprob_threshold: float = -1.5
    guess_no_speech_threshold: float = 0.3
    compression_ratio_threshold: float = 2.4
    max_words_per_second: float = 7.0

    def accept(
        self, result: DecodeResult, runner, prefix: Sequence[int], said: Sequence[Word] = (), offset: float = 0.0
    ) -> list[int]:
        """Positions of the generated tokens worth keeping; [] when the whole hypothesis
        looks spurious. `said`: the last words committed before the new ones, on the stream
        clock; `offset`: where the window starts on it (seconds)."""
        timing = Timing.of(result)
        decode = runner.decode_tokens
        kept = trim_repetition(result.tokens, prefix, timing, decode)
        kept = cut_restart(result.tokens, prefix, decode, timing, kept)
        kept = cut_squeezed_runs(result.tokens, prefix, decode, timing, kept)
        kept = cut_echo(result.tokens, prefix, decode, timing, kept, said, offset)
        kept = cut_unheard_tail(result.tokens, prefix, decode, timing, kept)
        if not kept:
            return []
        tokens = [result.tokens[k] for k in kept]
        if result.no_speech_prob > self.no_speech_threshold and result.avg_logprob < self.logprob_threshold:
            return []
        if result.avg_logprob < self.guess_logprob_threshold and result.no_speech_prob > self.guess_no_speech_threshold:
            return []
        # Over the new words only: committed text that repeats itself (a list, anaphora) is speech.
        text = runner.decode_tokens(tokens)
        if compression_ratio(text) > self.compression_ratio_threshold and len(text) > 40:
            return []
        words = len(text.split())
        if words > self.max_words_per_second * max(result.window_seconds, 1.0) + 3:
            return []
        return kept
