"""The LiveKit example page (examples/web/index.html) in headless Chromium, with a stand-in
for livekit-client (the page loads the real one from a CDN, which tests cannot reach): the
text streams and attributes the caption agent sends are played into the page's own handlers,
and what it shows and sends back is read from the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from support import browser

PAGE = Path(__file__).resolve().parents[2] / "examples" / "web" / "index.html"

# Just enough of livekit-client's Room for the page: text stream handlers, attribute events,
# remote participants and publishData, driven by the test through window.fake.
FAKE_LIVEKIT = """
<script>
window.LivekitClient = {
  RoomEvent: { ParticipantAttributesChanged: "participantAttributesChanged" },
  Room: class {
    constructor() {
      window.fake = this;
      this.handlers = {}; this.listeners = {}; this.sent = [];
      this.remoteParticipants = new Map();
      this.localParticipant = {
        publishData: async (data, options) => {
          this.sent.push({ data: new TextDecoder().decode(data), topic: options.topic });
        },
        setMicrophoneEnabled: async () => {},
      };
    }
    registerTextStreamHandler(topic, handler) { this.handlers[topic] = handler; }
    on(event, listener) { (this.listeners[event] = this.listeners[event] || []).push(listener); return this; }
    async connect() {
      this.remoteParticipants.set("roomscribe", { identity: "roomscribe", attributes: {
        "roomscribe.captions": "on", "roomscribe.translation": "on", "roomscribe.translation_languages": "en" } });
    }
    stream(identity, text, attributes) {
      return this.handlers["lk.transcription"]({ info: { attributes }, readAll: async () => text }, { identity });
    }
    botChanged(attributes) {
      const bot = this.remoteParticipants.get("roomscribe");
      Object.assign(bot.attributes, attributes);
      for (const listener of this.listeners["participantAttributesChanged"] || []) listener(attributes, bot);
    }
  },
};
</script>
"""

LINES = """
return [...document.querySelectorAll('#speaker-minji > div')].map((el) => ({
  text: el.textContent, translated: el.classList.contains('translated'),
  interim: el.classList.contains('interim'), original: el.title}));
"""


@pytest.fixture(scope="module")
def example_page(tmp_path_factory) -> Path:
    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    html = PAGE.read_text()
    html, found = re.subn(r'<script src="https://cdn[^"]+livekit-client[^"]+"></script>', FAKE_LIVEKIT, html)
    assert found == 1, "the example page no longer loads livekit-client from its CDN"
    out = tmp_path_factory.mktemp("example") / "index.html"
    out.write_text(html)
    return out


def _caption(segment: str, final: bool, language: str = "ko") -> dict:
    return {
        "lk.segment_id": segment,
        "lk.transcribed_track_id": "TR_minji",
        "lk.transcription_final": "true" if final else "false",
        "roomscribe.language": language,
    }


def _translation(segment: str, language: str, source: str = "ko") -> dict:
    return _caption(segment, True, language) | {"roomscribe.translation_of": source}


def test_the_example_page_shows_captions_in_the_language_picked_and_asks_for_more(example_page, tmp_path):
    from selenium.webdriver.support.select import Select

    wav = browser.write_fake_mic(np.zeros(1600, np.float32), tmp_path / "quiet.wav")
    with browser.chromium(wav, log_path=tmp_path / "chromedriver.log") as driver:
        driver.get(example_page.as_uri())
        driver.find_element("css selector", "#join button").click()
        read = Select(driver.find_element("id", "read"))
        browser.wait_for(lambda: len(read.options) == 2, 5, message="the bot's languages in the picker")
        assert [o.get_attribute("value") for o in read.options] == ["", "en"]

        def stream(text: str, attributes: dict) -> None:
            driver.execute_script("return window.fake.stream('minji', arguments[0], arguments[1]);", text, attributes)

        def lines() -> list[dict]:
            return driver.execute_script(LINES)

        read.select_by_value("en")
        stream("안녕하세요", _caption("S1", False))
        assert lines() == [{"text": "안녕하세요", "translated": False, "interim": True, "original": ""}]
        # A long sentence's first clause can come translated before the sentence ends.
        stream("Hello", _translation("S1", "en") | {"lk.transcription_final": "false"})
        assert lines() == [{"text": "Hello …", "translated": True, "interim": True, "original": "안녕하세요"}]
        stream("안녕하세요 여러분", _caption("S1", True))
        assert lines()[0]["text"] == "안녕하세요 여러분"  # the original until the final's translation comes
        stream("Hello, everyone", _translation("S1", "en"))
        assert lines() == [
            {"text": "Hello, everyone", "translated": True, "interim": False, "original": "안녕하세요 여러분"}
        ]
        # A caption spoken in the language read is shown as it is; another segment is its own line.
        stream("Thanks", _caption("S2", True, language="en"))
        assert [line["text"] for line in lines()] == ["Hello, everyone", "Thanks"]
        # A revised final replaces the text, and its old translation, until the new one comes.
        stream("안녕하십니까 여러분", _caption("S1", True))
        assert lines()[0]["text"] == "안녕하십니까 여러분" and not lines()[0]["translated"]
        stream("Good day, everyone", _translation("S1", "en"))
        assert lines()[0]["text"] == "Good day, everyone"

        read.select_by_value("")
        assert [line["text"] for line in lines()] == ["안녕하십니까 여러분", "Thanks"]

        # Another language: the room's languages plus this one, on the control topic.
        driver.find_element("id", "add-read").send_keys("es")
        driver.find_element("id", "add-read-button").click()
        sent = driver.execute_script("return window.fake.sent;")
        assert sent == [
            {
                "topic": "roomscribe.control",
                "data": json.dumps({"type": "set_translation", "languages": ["en", "es"]}).replace(" ", ""),
            }
        ]
        assert read.first_selected_option.get_attribute("value") == "es"

        # The bot says when translation fails; captions stay as spoken.
        driver.execute_script(
            "window.fake.botChanged(arguments[0]);",
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
        driver.execute_script(
            "window.fake.botChanged(arguments[0]);",
            {"roomscribe.translation": "on", "roomscribe.translation_note": note},
        )
        assert driver.find_element("id", "translation-state").text == note
