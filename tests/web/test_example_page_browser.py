"""The example pages (examples/web, built from npm: livekit-client, and components-react) in
headless Chromium, served as the README serves them, without a LiveKit server: the text
streams the caption agent sends are played into the plain page's own caption handler
(`window.roomscribeExample.handleCaption`, what its text stream handler calls with what it
read), the bot's attributes through the real Room's events, and the control messages the page
sends are read from `roomscribeExample.state.sent` (it records them even while not connected).
The React page gets its streams through the text stream handler components-react's
useTranscriptions() registers with the bundled livekit-client, which it does only while the room
is not disconnected: the page joins a server that accepts the connection and never answers, and
stays "connecting". tests/e2e/test_example_pages_e2e.py joins both to a room with the agent."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from support import browser
from support.examples import static_site

# The text stream handlers a page registers with livekit-client (which keeps them in a Map by
# topic), caught as it registers them, so a test can play streams in as the SDK would.
CATCH_HANDLERS = """
window.caughtHandlers = {};
const set = Map.prototype.set;
Map.prototype.set = function (key, value) {
  if (key === 'lk.transcription' && typeof value === 'function') window.caughtHandlers[key] = value;
  return set.call(this, key, value);
};
"""

# What a page shows, by the examples' DOM contract: per participant, a line per segment with
# its voice, text and translations; `shown` is the translation visible under the caption.
LINES = """
const out = {};
for (const box of document.querySelectorAll('[data-participant]')) {
  out[box.dataset.participant] = [...box.querySelectorAll('[data-segment]')].map((el) => {
    const shown = el.querySelector('.translation:not([hidden])');
    const translations = {};
    for (const t of el.querySelectorAll('.translation')) translations[t.dataset.language] = t.textContent;
    return {
      segment: el.dataset.segment, final: el.dataset.final, text: el.querySelector('.text').textContent,
      voice: el.querySelector('.voice') ? el.querySelector('.voice').textContent : null, translations,
      shown: shown ? {language: shown.dataset.language, text: shown.textContent, final: shown.dataset.final,
                      after: getComputedStyle(shown, '::after').content} : null,
      seen: el.getAttribute('data-seen'),
    };
  });
}
return out;
"""

# The bot's attributes as livekit-client reports them: ParticipantAttributesChanged on the Room.
BOT_CHANGED = """
const room = window.roomscribeExample.room;
window.bot = window.bot || {identity: 'roomscribe', attributes: {}};
Object.assign(window.bot.attributes, arguments[0]);
room.emit('participantAttributesChanged', arguments[0], window.bot);
"""


@pytest.fixture(scope="module")
def site(request) -> Iterator[str]:
    """The built pages on a static server (a browser first: without one, nothing to build for)."""
    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    with static_site(request.getfixturevalue("example_pages")) as url:
        yield url


@pytest.fixture(scope="module")
def driver(site, tmp_path_factory) -> Iterator:
    folder = tmp_path_factory.mktemp("example-browser")
    wav = browser.write_fake_mic(np.zeros(1600, np.float32), folder / "quiet.wav")
    with browser.chromium(wav, log_path=folder / "chromedriver.log") as driver:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_HANDLERS})
        yield driver


def _open(driver, url: str) -> None:
    driver.get("about:blank")  # a new document, even when only the hash differs
    driver.get(url)
    browser.wait_for(
        lambda: driver.execute_script("return !!window.caughtHandlers['lk.transcription'];"),
        10,
        0.1,
        message=f"{url} to register its caption handler",
    )


def _caption(segment: str, final: bool, language: str = "ko", track: str = "TR_minji") -> dict:
    return {
        "lk.segment_id": segment,
        "lk.transcribed_track_id": track,
        "lk.transcription_final": "true" if final else "false",
        "roomscribe.language": language,
    }


def _translation(segment: str, language: str, source: str = "ko") -> dict:
    """A translation of the caption of `segment`: its own segment id, linked by caption_segment_id."""
    return _caption(f"{segment}-{language}", True, language) | {
        "roomscribe.caption_segment_id": segment,
        "roomscribe.translation_of": source,
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """A server URL that takes connections (the kernel accepts them) and never answers: a page
    joining it stays "connecting" (livekit-client gives up after 15 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"ws://127.0.0.1:{s.getsockname()[1]}"


def _handle(driver, identity: str, text: str, attributes: dict) -> None:
    driver.execute_script("window.roomscribeExample.handleCaption(...arguments);", identity, attributes, text)


def _stream(driver, identity: str, text: str, attributes: dict) -> None:
    """A text stream as livekit-client hands it to the page's handler (a reader, which reads
    all at once or by chunks, and the sender)."""
    driver.execute_async_script(
        """const [identity, text, attributes, done] = arguments;
        const info = {id: 'ST_' + Math.random(), topic: 'lk.transcription', timestamp: Date.now(),
                      mimeType: 'text/plain', attributes};
        const reader = {info, readAll: async () => text, [Symbol.asyncIterator]: async function* () { yield text; }};
        window.caughtHandlers['lk.transcription'](reader, {identity}).then(() => done());""",
        identity,
        text,
        attributes,
    )


def _mark_seen(driver, segment: str) -> None:
    """Mark the line of `segment` (once it shows): a later update must land on that element."""
    browser.wait_for(
        lambda: driver.execute_script(
            "const el = document.querySelector(`[data-segment='${arguments[0]}']`);"
            "if (el) el.setAttribute('data-seen', 'interim'); return !!el;",
            segment,
        ),
        5,
        0.05,
        message=f"the line of {segment}",
    )


def test_the_page_runs_the_bundled_livekit_client(site, driver):
    _open(driver, f"{site}/index.html")
    room = driver.execute_script(
        """const room = window.roomscribeExample.room;
        let again = '';
        try { room.registerTextStreamHandler('lk.transcription', () => {}); } catch (e) { again = e.message; }
        return {state: room.state, again, local: typeof room.localParticipant.publishData};"""
    )
    assert room["state"] == "disconnected" and room["local"] == "function"
    assert "already been set" in room["again"]  # the page's own handler holds the caption topic
    assert driver.find_element("id", "connection").text == "disconnected"
    assert driver.find_element("id", "pause").get_attribute("disabled")  # controls wait for the room
    # What the SDK's text stream handler reads goes to handleCaption.
    _stream(driver, "minji", "안녕하세요", _caption("S1", True))
    assert driver.execute_script(LINES)["minji"][0]["text"] == "안녕하세요"


def test_the_example_page_shows_captions_in_the_language_picked_and_asks_for_more(site, driver):
    from selenium.webdriver.support.select import Select

    _open(driver, f"{site}/index.html")
    driver.execute_script(
        BOT_CHANGED,
        {"roomscribe.captions": "on", "roomscribe.translation": "on", "roomscribe.translation_languages": "en"},
    )
    read = Select(driver.find_element("id", "read"))
    assert [o.get_attribute("value") for o in read.options] == ["", "en"]

    def stream(text: str, attributes: dict) -> None:
        _handle(driver, "minji", text, attributes)

    def lines() -> list[dict]:
        return driver.execute_script(LINES)["minji"]

    read.select_by_value("en")
    stream("안녕하세요", _caption("S1", False))
    [line] = lines()
    assert (line["segment"], line["final"], line["text"], line["shown"]) == ("S1", "false", "안녕하세요", None)
    # A long sentence's first clause can come translated before the sentence ends ("…": more follows).
    stream("Hello", _translation("S1", "en") | {"lk.transcription_final": "false"})
    assert lines()[0]["shown"] == {"language": "en", "text": "Hello", "final": "false", "after": '" …"'}
    assert lines()[0]["text"] == "안녕하세요"  # the caption stays, the translation under it
    stream("안녕하세요 여러분", _caption("S1", True))
    # The original until the final's translation comes; the provisional one is gone.
    assert lines() == [
        {
            "segment": "S1",
            "final": "true",
            "text": "안녕하세요 여러분",
            "voice": None,
            "translations": {},
            "shown": None,
            "seen": None,
        }
    ]
    stream("Hello, everyone", _translation("S1", "en"))
    assert lines()[0]["shown"] == {"language": "en", "text": "Hello, everyone", "final": "true", "after": "none"}
    # A provisional translation after the final is late: the final one stays.
    stream("Hello", _translation("S1", "en") | {"lk.transcription_final": "false"})
    assert lines()[0]["shown"]["text"] == "Hello, everyone"
    # A caption spoken in the language read is shown as it is; another segment is its own line.
    stream("Thanks", _caption("S2", True, language="en"))
    assert [(line["text"], line["shown"]) for line in lines()][1] == ("Thanks", None)
    # A revised final replaces the text, and its old translation, until the new one comes.
    stream("안녕하십니까 여러분", _caption("S1", True))
    assert lines()[0]["text"] == "안녕하십니까 여러분" and lines()[0]["translations"] == {}
    stream("Good day, everyone", _translation("S1", "en"))
    assert lines()[0]["shown"]["text"] == "Good day, everyone"

    read.select_by_value("")
    assert [(line["text"], line["shown"]) for line in lines()] == [("안녕하십니까 여러분", None), ("Thanks", None)]
    assert lines()[0]["translations"] == {"en": "Good day, everyone"}  # kept for when it is read again

    # Another language: the room's languages plus this one, on the control topic. (The page is
    # not connected: its controls are enabled by hand, and it records what it would send.)
    driver.execute_script("document.getElementById('add-read-button').disabled = false;")
    driver.find_element("id", "add-read").send_keys("es")
    driver.find_element("id", "add-read-button").click()
    assert driver.execute_script("return window.roomscribeExample.state.sent;") == [
        {"type": "set_translation", "languages": ["en", "es"]}
    ]
    assert read.first_selected_option.get_attribute("value") == "es"
    stream("Buenos días a todos", _translation("S1", "es"))
    assert lines()[0]["shown"]["text"] == "Buenos días a todos"

    # The bot says when translation fails; captions stay as spoken.
    driver.execute_script(
        BOT_CHANGED,
        {
            "roomscribe.translation": "failing: llama: took longer than 20 s",
            "roomscribe.translation_languages": "en,es",
        },
    )
    state = driver.find_element("id", "translation-state").text
    assert state == "translation failing: llama: took longer than 20 s (captions shown as spoken)"
    assert [line["text"] for line in lines()] == ["안녕하십니까 여러분", "Thanks"]
    # Working again, with a note on a language the model is weak in.
    note = "translation into Korean by the packaged 1.5B model is rough"
    driver.execute_script(BOT_CHANGED, {"roomscribe.translation": "on", "roomscribe.translation_note": note})
    assert driver.find_element("id", "translation-state").text == note


def test_a_box_per_participant_a_line_per_segment_and_the_voices_of_a_shared_track(site, driver):
    _open(driver, f"{site}/index.html")
    _handle(driver, "alice", "Good morning", _caption("SG_1", False, "en", track="TR_alice"))
    # The test marks the line it saw; the final must land on that same element.
    _mark_seen(driver, "SG_1")
    _handle(driver, "alice", "Good morning, everyone.", _caption("SG_1", True, "en", track="TR_alice"))
    # A room microphone with two people on it: one participant, a voice label per line.
    room_mic = {"lk.transcribed_track_id": "TR_mic", "roomscribe.language": "en"}
    for segment, voice, text in (("SG_2", "S1", "Shall we start?"), ("SG_3", "S2", "Yes.")):
        _handle(driver, "boardroom", text, room_mic | {"lk.segment_id": segment, "roomscribe.speaker": voice})
    _handle(
        driver,
        "boardroom",
        "Shall we start now?",
        room_mic | {"lk.segment_id": "SG_2", "roomscribe.speaker": "S1", "lk.transcription_final": "true"},
    )
    shown = driver.execute_script(LINES)
    assert list(shown) == ["alice", "boardroom"]
    [alice] = shown["alice"]
    assert (alice["segment"], alice["final"], alice["text"], alice["voice"], alice["seen"]) == (
        "SG_1",
        "true",
        "Good morning, everyone.",
        None,
        "interim",
    )
    assert [(line["segment"], line["voice"], line["text"], line["final"]) for line in shown["boardroom"]] == [
        ("SG_2", "S1", "Shall we start now?", "true"),
        ("SG_3", "S2", "Yes.", "false"),
    ]


def test_pause_resume_and_set_language_are_control_messages(site, driver):
    _open(driver, f"{site}/index.html")
    driver.execute_script(
        "for (const b of document.querySelectorAll('.controls button')) b.disabled = false;"
        "document.getElementById('lang-who').value = 'carol';"
        "document.getElementById('lang').value = 'fr';"
        "for (const id of ['pause', 'resume', 'set-lang']) document.getElementById(id).click();"
        "document.getElementById('lang').value = '';"
        "document.getElementById('set-lang').click();"
    )
    assert driver.execute_script("return window.roomscribeExample.state.sent;") == [
        {"type": "pause"},
        {"type": "resume"},
        {"type": "set_language", "participant": "carol", "language": "fr"},
        {"type": "set_language", "participant": "carol", "language": None},
    ]
    driver.execute_script(BOT_CHANGED, {"roomscribe.captions": "paused"})
    assert driver.find_element("id", "state").text == "captions paused"
    driver.execute_script(BOT_CHANGED, {"roomscribe.captions": "on"})
    assert driver.find_element("id", "state").text == ""


@pytest.mark.parametrize("page", ["index.html", "react.html"])
def test_a_link_with_the_url_and_token_joins_directly(site, driver, page):
    url = f"ws://127.0.0.1:{_closed_port()}"
    _open(driver, f"{site}/{page}#url={url}&token=a.b.c&mic=1")
    assert driver.find_element("id", "url").get_attribute("value") == url
    assert driver.find_element("id", "token").get_attribute("value") == "a.b.c"
    assert driver.find_element("id", "mic").is_selected()
    # Nothing listens there: the page tried, and says why it is not connected.
    browser.wait_for(
        lambda: driver.find_element("id", "connection").text.startswith("error: could not establish"),
        30,
        message="the page to report the failed connection",
    )
    assert driver.find_element("id", "connection").get_attribute("data-state") == "error"
    if page == "index.html":
        # Copy link: the same link for the form's values (in the address bar when the
        # clipboard is not there).
        driver.find_element("id", "copy-link").click()
        link = driver.execute_script("return location.hash;")
        assert link == f"#url={url.replace(':', '%3A').replace('/', '%2F')}&token=a.b.c&mic=1"


@pytest.fixture
def react_page(site, driver) -> Iterator:
    """react.html, joining (useTranscriptions() listens from then on)."""
    with _silent_server() as url:
        _open(driver, f"{site}/react.html#url={url}&token=a.b.c")
        assert driver.find_element("id", "connection").text == "connecting"
        yield driver


def _wait_lines(driver, identity: str, done, message: str) -> list[dict]:
    """The lines of `identity` once `done(lines)` (React renders after the stream is handled)."""

    def ready() -> list[dict] | None:
        lines = driver.execute_script(LINES).get(identity)
        return lines if lines and done(lines) else None

    return browser.wait_for(ready, 5, 0.05, message=message)


def test_the_react_page_keeps_a_line_per_segment_with_its_translations_apart(react_page):
    driver = react_page
    _stream(driver, "minji", "안녕하세요", _caption("S1", False))
    _mark_seen(driver, "S1")
    _stream(driver, "minji", "Hello", _translation("S1", "en") | {"lk.transcription_final": "false"})
    _stream(driver, "minji", "안녕하세요 여러분", _caption("S1", True))
    _stream(driver, "minji", "Hello, everyone", _translation("S1", "en"))
    _stream(driver, "minji", "皆さん、こんにちは", _translation("S1", "ja"))
    mic = {"lk.transcribed_track_id": "TR_mic", "roomscribe.language": "en", "lk.transcription_final": "true"}
    _stream(driver, "boardroom", "Shall we start?", mic | {"lk.segment_id": "SG_2", "roomscribe.speaker": "S1"})
    _stream(driver, "boardroom", "Yes.", mic | {"lk.segment_id": "SG_3", "roomscribe.speaker": "S2"})

    _wait_lines(driver, "boardroom", lambda lines: len(lines) == 2, "the React page to render the lines")
    shown = driver.execute_script(LINES)
    assert shown["minji"] == [
        {
            "segment": "S1",
            "final": "true",
            "text": "안녕하세요 여러분",
            "voice": None,
            "translations": {"en": "Hello, everyone", "ja": "皆さん、こんにちは"},
            "shown": None,  # reading the original
            "seen": "interim",  # the line the interim was on
        }
    ]
    assert [(line["voice"], line["text"]) for line in shown["boardroom"]] == [("S1", "Shall we start?"), ("S2", "Yes.")]


def test_the_react_page_puts_translations_under_their_caption_the_final_in_place_of_the_provisional(react_page):
    driver = react_page

    def translations() -> list[dict]:
        return driver.execute_script(
            "return [...document.querySelectorAll('[data-segment] .translation')].map((t) => ("
            "{segment: t.closest('[data-segment]').dataset.segment, language: t.dataset.language,"
            " final: t.dataset.final, text: t.textContent}));"
        )

    _stream(driver, "minji", "안녕하세요", _caption("S1", False))
    # A long sentence's first clause, translated before the sentence ends: under the caption,
    # which it does not replace, and not a line of its own (its segment id is its own).
    _stream(driver, "minji", "Hello", _translation("S1", "en") | {"lk.transcription_final": "false"})
    lines = _wait_lines(driver, "minji", lambda lines: lines[0]["translations"], "the provisional translation")
    assert [(line["segment"], line["text"]) for line in lines] == [("S1", "안녕하세요")]
    assert translations() == [{"segment": "S1", "language": "en", "final": "false", "text": "Hello"}]
    # The final translation replaces the provisional one (the same segment id): one per language.
    _stream(driver, "minji", "Hello, everyone", _translation("S1", "en"))
    _wait_lines(driver, "minji", lambda lines: lines[0]["translations"]["en"] != "Hello", "the final translation")
    assert translations() == [{"segment": "S1", "language": "en", "final": "true", "text": "Hello, everyone"}]
    _stream(driver, "minji", "안녕하세요 여러분", _caption("S1", True))
    lines = _wait_lines(driver, "minji", lambda lines: lines[0]["final"] == "true", "the final caption")
    assert [(line["segment"], line["text"], line["translations"]) for line in lines] == [
        ("S1", "안녕하세요 여러분", {"en": "Hello, everyone"})
    ]
    # A final caption shows no provisional translation: it waits for the final one.
    _stream(driver, "minji", "Good morning", _caption("S2", True))
    _stream(driver, "minji", "Bonjour", _translation("S2", "fr") | {"lk.transcription_final": "false"})
    _stream(driver, "minji", "잘 부탁드립니다", _caption("S3", True))
    lines = _wait_lines(driver, "minji", lambda lines: len(lines) == 3, "the third line")
    assert [(line["segment"], line["translations"]) for line in lines] == [
        ("S1", {"en": "Hello, everyone"}),
        ("S2", {}),
        ("S3", {}),
    ]
