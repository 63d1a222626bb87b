"""`roomscribe serve`'s app with a given translation (the real local model, a scripted
translator, or none at all), run in-process like `support.serving.running_server`."""

from __future__ import annotations

import contextlib

from aiohttp import web

from roomscribe.translation import TranslationService, Translator
from roomscribe.web.config import ServerConfig
from roomscribe.web.keys import TRANSLATION_KEY, Translation

from .serving import running_server


@contextlib.contextmanager
def translating_server(
    engine, translator: Translator | None, *, unavailable: str = "no translator in this test", host: str = "127.0.0.1"
):
    """A server whose doors translate with `translator` (one `TranslationService` of its
    own), or, with None, a server that has no translator and says `unavailable`."""
    service = TranslationService(Borrowed(translator)) if translator is not None else None

    def setup(app: web.Application) -> None:
        app[TRANSLATION_KEY] = Translation(service, None if service else unavailable)

    try:
        with running_server(engine, ServerConfig(host=host, port=0), host, setup) as server:
            yield server
    finally:
        if service is not None:
            service.close()  # its thread; the translator itself stays the caller's


class Borrowed:
    """The caller's translator, used by the server's service but never closed by it (the
    real model is loaded once per test session and closed by its fixture)."""

    def __init__(self, translator: Translator):
        self.translator = translator

    def __getattr__(self, name: str):
        return getattr(self.translator, name)  # name, model, concurrency, translate, ...

    async def aclose(self) -> None:
        pass


# -- is it Spanish? -------------------------------------------------------------------------------

SPANISH_WORDS = frozenset(
    "el la los las de del que y en un una es son por con para se su sus al lo como más pero no "
    "o este esta estos estas fue era han ha hay sin sobre entre desde todo todos muy si ya".split()
)
ENGLISH_WORDS = frozenset(
    "the of and to is was that with which for from by are were this these it its be have has not or at as on an".split()
)


def words(text: str) -> list[str]:
    import re

    return re.findall(r"[^\W\d_]+", text.lower())


def looks_spanish(text: str, english: str) -> bool:
    """A translation into Spanish of `english`, by content: not the English again, more of
    Spanish's everyday words than of English's, and at least two of them (a short caption of
    names and numbers could have none, so callers ask this of whole sentences)."""
    said = words(text)
    if not said or said == words(english):
        return False
    spanish = sum(w in SPANISH_WORDS for w in said)
    englishy = sum(w in ENGLISH_WORDS for w in said)
    return spanish >= 2 and spanish > 2 * englishy
