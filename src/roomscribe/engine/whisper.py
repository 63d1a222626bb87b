"""Model access: batched encode, generate and align over CTranslate2 Whisper.

Every call takes a list of requests so that one call can serve many streams;
the encoder output of a call is reused for language detection, decoding and
alignment. Windows shorter than 30 s are encoded at their own length (plus
a little silence, without which the decoder runs on past the end).

A request's result depends on that request alone, never on what it is batched
with: its encoder length and its text context are functions of the request, and
requests are batched only with others of the same encoder length and context length
(CTranslate2 pads neither the encoder input nor the prompt position).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .pcm import SAMPLE_RATE

HOP = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # mel frames: 100 per second
ALIGN_FRAME_SECONDS = 0.02  # one encoder frame = two mel frames
MAX_FRAMES = 3000
MAX_CONTEXT_TOKENS = 224  # of earlier text given as a decode's prompt
_CONTEXT_QUANTUM = 32  # earlier-text context is cut to a multiple of this many tokens


@dataclass
class DecodeOptions:
    beam_size: int = 1
    # Silence put before every window: Whisper often misses words that begin on the very
    # first frame ("This is the ..." heard as "The ..."), as a window cut at a word or a
    # stream that opens mid-speech has them.
    lead_seconds: float = 0.1
    pad_seconds: float = 1.0
    # Encoder inputs are rounded up to a multiple of this: coarser steps let more windows
    # share a shape, and so a batch, at the price of encoding more silence.
    frame_step_seconds: float = 2.0
    max_prompt_tokens: int = 128
    max_tokens_per_second: float = 8.0
    suppress_blank: bool = True
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class DecodeRequest:
    """One window to decode: audio plus the text context of its stream."""

    audio: np.ndarray
    language: str | None = None  # None: detect
    task: str = "transcribe"
    prompt: list[int] = field(default_factory=list)  # earlier committed text, as context
    pinned: list[int] = field(default_factory=list)  # always at the head of the context (vocabulary)
    prefix: list[int] = field(default_factory=list)  # tokens forced at the start of the output
    align: bool = True


@dataclass
class DecodeResult:
    language: str
    language_probability: float
    prefix: list[int]
    tokens: list[int]  # generated after the prefix, without end-of-text
    token_starts: list[float]  # seconds from window start, for prefix + tokens
    token_ends: list[float]
    token_probs: list[float]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    window_seconds: float

    def generated(self, kept: list[int]) -> tuple[list[int], list[float], list[float], list[float]]:
        """The generated tokens at positions `kept`, with their timings and probabilities."""
        p = len(self.prefix)
        return (
            [self.tokens[k] for k in kept],
            [self.token_starts[p + k] for k in kept],
            [self.token_ends[p + k] for k in kept],
            [self.token_probs[p + k] for k in kept],
        )


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


class WhisperRunner:
    """Owns one loaded model; shared by every stream of the process."""

    def __init__(self, model, options: DecodeOptions | None = None, name: str = "whisper"):
        from faster_whisper.tokenizer import Tokenizer

        self.fw_model = model  # faster-whisper wrapper: tokenizer, features, long-form path
        self.model = model.model  # ctranslate2.models.Whisper
        self.name = name
        self.options = options or DecodeOptions()
        self.multilingual = bool(self.model.is_multilingual)
        self._hf_tokenizer = model.hf_tokenizer
        self._feature_extractor = model.feature_extractor
        self._tokenizer_cls = Tokenizer
        self._n_mels = self._feature_extractor.mel_filters.shape[0]
        # CTranslate2 calls are thread-safe, but serialising them keeps the
        # cores for one call at a time, which is what the CPU path wants.
        self._lock = threading.Lock()
        self.calls = 0

    # -- tokens -------------------------------------------------------------
    @lru_cache(maxsize=64)  # noqa: B019 - one runner per process lives as long as the process
    def tokenizer(self, language: str | None = None, task: str = "transcribe"):
        if not self.multilingual:
            return self._tokenizer_cls(self._hf_tokenizer, False)
        return self._tokenizer_cls(self._hf_tokenizer, True, task=task, language=language or "en")

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer().encode(text)

    def decode_tokens(self, tokens: list[int]) -> str:
        return self.tokenizer().decode(tokens)

    @property
    def eot(self) -> int:
        return self.tokenizer().eot

    # -- features -----------------------------------------------------------
    @property
    def _lead(self) -> int:
        return int(self.options.lead_seconds * SAMPLE_RATE)

    def _frames_for(self, n_samples: int) -> int:
        content = int(np.ceil((self._lead + n_samples) / HOP))
        padded = content + int(self.options.pad_seconds * FRAMES_PER_SECOND)
        step = max(1, int(self.options.frame_step_seconds * FRAMES_PER_SECOND))
        return int(min(MAX_FRAMES, max(step, -(-padded // step) * step)))

    def shape(self, n_samples: int, n_prompt_tokens: int, n_pinned: int = 0) -> tuple[int, int]:
        """What a request is batched by: its encoder frames and its context length."""
        return self._frames_for(n_samples), len(self._context([0] * n_prompt_tokens, [0] * n_pinned))

    def _features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        lead = self._lead
        audio = audio[: frames * HOP - HOP - lead]
        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[lead : lead + len(audio)] = audio
        mel = self._feature_extractor(padded, padding=0)
        return mel[:, :frames].astype(np.float32, copy=False)

    # -- the call -------------------------------------------------------------
    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Encode, detect language where needed, generate and align: one batched call per
        group of requests that share an encoder length and a context length."""
        if not requests:
            return []
        frames = [self._frames_for(len(r.audio)) for r in requests]
        contexts = [self._context(r.prompt, r.pinned) for r in requests]
        results: list[DecodeResult | None] = [None] * len(requests)
        with self._lock:
            for idx in _groups([(f, len(c)) for f, c in zip(frames, contexts)]):  # = shape()
                group = self._decode_same_shape([requests[i] for i in idx], frames[idx[0]], [contexts[i] for i in idx])
                for i, result in zip(idx, group):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _context(self, prompt: list[int], pinned: list[int] = ()) -> list[int]:
        """Pinned tokens, then as much of the latest earlier text as fits; the whole is cut to
        a multiple of the quantum where the earlier text allows, so more requests batch."""
        pinned = list(pinned[: self.options.max_prompt_tokens])
        n = min(len(prompt), self.options.max_prompt_tokens - len(pinned))
        n -= min(n, (len(pinned) + n) % _CONTEXT_QUANTUM)
        return [*pinned, *prompt[len(prompt) - n :]] if n else pinned

    def _decode_same_shape(
        self, requests: list[DecodeRequest], frames: int, contexts: list[list[int]]
    ) -> list[DecodeResult]:
        import ctranslate2

        batch = np.stack([self._features(r.audio, frames) for r in requests])
        content_frames = [min(frames, int(np.ceil((self._lead + len(r.audio)) / HOP))) for r in requests]
        self.calls += 1
        encoded = self.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True)
        languages = self._languages(requests, encoded)
        prompts = [self._prompt(r, lang, ctx) for r, lang, ctx in zip(requests, languages, contexts)]
        max_new = [int(len(r.audio) / SAMPLE_RATE * self.options.max_tokens_per_second) + 8 for r in requests]
        # One length limit for the whole call, from the shape alone, so that a row stops where
        # it would alone: room for the committed prefix (4 tokens/s) and the new text.
        seconds = frames / FRAMES_PER_SECOND
        max_length = min(448, len(contexts[0]) + 5 + int(seconds * (self.options.max_tokens_per_second + 4)) + 8)
        generated = self.model.generate(
            encoded,
            prompts,
            beam_size=self.options.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=self.options.suppress_blank,
            repetition_penalty=self.options.repetition_penalty,
            no_repeat_ngram_size=self.options.no_repeat_ngram_size,
        )
        eot = self.eot
        token_lists = []
        for r, g, limit in zip(requests, generated, max_new):
            ids = list(g.sequences_ids[0])
            if r.prefix and ids[: len(r.prefix)] == list(r.prefix):
                ids = ids[len(r.prefix) :]  # CTranslate2 returns the forced prefix too
            ids = [t for t in ids if t < eot][:limit]
            token_lists.append(ids)
        alignments = self._align(requests, languages, encoded, token_lists, content_frames)

        results = []
        for i, r in enumerate(requests):
            lang, prob = languages[i]
            tokens = token_lists[i]
            starts, ends, probs = alignments[i]
            text = self.decode_tokens(tokens)
            results.append(
                DecodeResult(
                    language=lang,
                    language_probability=prob,
                    prefix=list(r.prefix),
                    tokens=tokens,
                    token_starts=starts,
                    token_ends=ends,
                    token_probs=probs,
                    avg_logprob=float(generated[i].scores[0]) if generated[i].scores else 0.0,
                    no_speech_prob=float(generated[i].no_speech_prob),
                    compression_ratio=compression_ratio(text),
                    window_seconds=len(r.audio) / SAMPLE_RATE,
                )
            )
        return results

    def _languages(self, requests, encoded) -> list[tuple[str, float]]:
        if not self.multilingual:
            return [("en", 1.0)] * len(requests)
        out: list[tuple[str, float] | None] = [(r.language, 1.0) if r.language else None for r in requests]
        if any(o is None for o in out):
            detected = self.model.detect_language(encoded)
            for i, o in enumerate(out):
                if o is None:
                    token, prob = detected[i][0]
                    out[i] = (token[2:-2], float(prob))
        return out  # type: ignore[return-value]

    def _prompt(self, request: DecodeRequest, language: tuple[str, float], context: list[int]) -> list[int]:
        tok = self.tokenizer(language[0], request.task)
        prompt: list[int] = []
        if context:
            prompt = [tok.sot_prev, *context]
        return [*prompt, *tok.sot_sequence, tok.no_timestamps, *request.prefix]

    def _align(self, requests, languages, encoded, token_lists, content_frames):
        empty = ([], [], [])
        out: list[tuple[list[float], list[float], list[float]]] = [empty] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(requests):
            text_tokens = [*r.prefix, *token_lists[i]]
            if r.align and text_tokens:
                groups.setdefault((languages[i][0], r.task), []).append(i)
        if not groups:
            return out
        rows = _Rows(encoded, len(requests))
        for (lang, task), idx in groups.items():
            sub = rows.take(idx)
            tok = self.tokenizer(lang, task)
            seqs = [[*requests[i].prefix, *token_lists[i]] for i in idx]
            aligned = self.model.align(
                sub, list(tok.sot_sequence) + [tok.no_timestamps], seqs, [content_frames[i] for i in idx]
            )
            lead = self.options.lead_seconds
            for i, seq, res in zip(idx, seqs, aligned):
                starts, ends, probs = _token_times(res, len(seq))
                # On the window's clock: the lead silence comes off.
                out[i] = ([max(0.0, t - lead) for t in starts], [max(0.0, t - lead) for t in ends], probs)
        return out


def _groups(keys: list) -> list[list[int]]:
    """Indexes grouped by key, in first-seen order."""
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class _Rows:
    """Rows of a batched encoder output, copied out only when a call needs a subset."""

    def __init__(self, encoded, n: int):
        self._encoded, self._n, self._array = encoded, n, None

    def take(self, idx: list[int]):
        if len(idx) == self._n:
            return self._encoded
        import ctranslate2

        if self._array is None:
            self._array = np.array(self._encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(self._array[idx]))


def _token_times(result, n_tokens: int) -> tuple[list[float], list[float], list[float]]:
    """Per-token start/end seconds from a DTW alignment path (text index, frame)."""
    pairs = np.asarray(result.alignments, dtype=np.int64).reshape(-1, 2)
    starts = np.zeros(n_tokens + 1)
    if len(pairs):
        text_idx, time_idx = pairs[:, 0], pairs[:, 1]
        jumps = np.concatenate([[True], np.diff(text_idx) != 0])
        first_frame = {}
        for t, f in zip(text_idx[jumps], time_idx[jumps]):
            first_frame.setdefault(int(t), int(f))
        last = 0
        for k in range(n_tokens + 1):
            last = first_frame.get(k, last)
            starts[k] = last * ALIGN_FRAME_SECONDS
        if n_tokens not in first_frame:
            starts[n_tokens] = (int(time_idx.max()) + 1) * ALIGN_FRAME_SECONDS
    probs = list(map(float, result.text_token_probs))[:n_tokens]
    probs += [1.0] * (n_tokens - len(probs))
    return starts[:-1].tolist(), starts[1:].tolist(), probs


__all__ = ["DecodeOptions", "DecodeRequest", "DecodeResult", "WhisperRunner", "SAMPLE_RATE", "compression_ratio"]
