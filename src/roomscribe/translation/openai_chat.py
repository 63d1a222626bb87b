"""The `openai` backend: any OpenAI-compatible chat endpoint (vLLM or a llama.cpp server on a GPU
box, or a hosted API), with the same prompts as the local model.

The URL and key are the operator's (environment), never a client's. Each translation has a
timeout; a failed or timed-out request is retried once after a short pause, then reported.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from .errors import TranslationFailedError
from .prompts import DEFAULT_STYLE, PromptStyle, TranslationRequest, clean_reply, max_reply_tokens, messages

logger = logging.getLogger("roomscribe.translation")

ATTEMPTS = 2
RETRY_PAUSE = 0.5
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class OpenAIChatTranslator:
    name = "openai"
    needs_audio = False  # it reads the caption's text
    cancellable = True  # the request is closed
    targets: tuple[str, ...] | None = None  # any language the endpoint's model writes

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 20.0,
        concurrency: int = 8,
        style: PromptStyle = DEFAULT_STYLE,
    ):
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self.model = model or "default"
        self._api_key = api_key
        self.timeout = timeout
        self.concurrency = concurrency
        self.weak_targets: dict[str, str] = {}  # not measured: the operator chose the model
        self.style = style
        self._session: aiohttp.ClientSession | None = None

    async def prepare(self) -> None:
        """Nothing to load: the endpoint holds the model."""

    async def translate(self, request: TranslationRequest) -> str:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = {
            "model": self.model,
            "messages": messages(request, self.style),
            "max_tokens": max_reply_tokens(request),
            "temperature": 0.0,
        }
        error = "no attempt"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._session.post(self.endpoint, json=body) as response:
                    if response.status == 200:
                        data = await response.json(content_type=None)
                        text = clean_reply(_content(data), request)
                        if not text:
                            raise TranslationFailedError("the endpoint's reply was empty")
                        return text
                    detail = (await response.text())[:200]
                    error = f"HTTP {response.status}: {detail}"
                    if response.status not in RETRYABLE_STATUS:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_PAUSE)
        raise TranslationFailedError(f"{self.endpoint}: {error}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _content(data: object) -> str:
    try:
        return data["choices"][0]["message"]["content"] or ""  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        raise TranslationFailedError(f"not a chat completion: {str(data)[:200]}") from None
