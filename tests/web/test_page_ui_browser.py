"""The caption page as a person meets it, in a real headless Chromium: what the empty page
says to do, the record button with its level meter and timer, Space to start and stop, the
caption size (kept across a reload), light and dark schemes with high contrast, and files
dropped or chosen on the page transcribed with a progress bar (or refused with the server's
own words).

Needs /usr/bin/chromium and /usr/bin/chromedriver; the tests that capture the microphone
over WebRTC also need the private network namespace conftest enters (WebRTC ignores
loopback). With ROOMSCRIBE_SCREENSHOTS=DIR the empty page and a transcribed file are saved
as PNGs there (bench/screenshots.py).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support import browser
from support.speech import wer
from support.translating import translating_server
from support.translators import ScriptedTranslator

LEAD_SILENCE = 2.0  # seconds of silence on the fake microphone before the speech


@pytest.fixture(scope="module")
def webrtc_ready(chromium_available, emulator_host) -> None:
    """A browser that can reach the server over WebRTC (the private network namespace)."""


@pytest.fixture(scope="module")
def quiet_mic(tmp_path_factory) -> Path:
    return browser.write_fake_mic(np.zeros(16000, np.float32), tmp_path_factory.mktemp("quiet") / "quiet.wav")


@pytest.fixture(scope="module")
def speaking_mic(eval_dir, manifest, tmp_path_factory) -> Path:
    """Two seconds of silence, then LJ001-0001 (about ten seconds of read speech)."""
    audio, rate = sf.read(eval_dir / "asr/en/ljspeech/LJ001-0001.flac", dtype="float32")
    assert rate == 16000
    audio = np.concatenate([np.zeros(int(LEAD_SILENCE * 16000), np.float32), audio, np.zeros(16000, np.float32)])
    return browser.write_fake_mic(audio, tmp_path_factory.mktemp("speech") / "speech.wav")


def _visible(driver, css: str) -> bool:
    found = driver.find_elements("css selector", css)
    return bool(found) and found[0].is_displayed()


def _phase(driver) -> str:
    return driver.execute_script("return window.roomscribe.state.phase")


def _caption(driver, **message) -> None:
    """Plays one caption message into the page, as if it came on the data channel."""
    base = {"type": "caption", "participant": "P_1", "speaker": "Ana", "color": 0, "segment_id": "S1"}
    driver.execute_script("onMessage(arguments[0]);", base | {"language": "en", "final": True, "tail": ""} | message)


def _press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _connected(driver, participant_before=None) -> str:
    def welcomed():
        page = browser.read_page(driver)
        if page["error"]:
            raise AssertionError(f"the page shows an error: {page['error']!r}")
        return page["participant"] if page["participant"] != participant_before else None

    return browser.wait_for(welcomed, 30, message="the page to connect (welcome on the data channel)")


# -- the empty page ---------------------------------------------------------------------------


@pytest.mark.screenshots
def test_the_empty_page_says_what_to_do_and_offers_one_big_record_button(chromium_available, server, quiet_mic):
    with browser.chromium(quiet_mic) as driver:
        driver.set_window_size(*browser.SCREENSHOT_SIZE)
        driver.get(server.url + "/")
        guide = driver.find_element("id", "empty")
        assert guide.is_displayed()
        text = guide.text
        for words in ("Space", "Allow the microphone", "Share the session link", "drop an audio or video file"):
            assert words in text, f"the empty state does not say {words!r}: {text!r}"
        assert driver.find_element("id", "share").text.startswith(server.url)

        record = driver.find_element("id", "start")
        assert record.is_displayed() and record.is_enabled()
        assert record.size["width"] >= 80 and record.size["width"] == record.size["height"], record.size
        assert record.value_of_css_property("border-radius") == "50%"
        stop = driver.find_element("id", "stop")
        assert not stop.is_displayed() and not stop.is_enabled()
        assert driver.find_element("id", "timer").text == "00:00"
        assert driver.find_element("id", "level").get_attribute("aria-valuenow") == "0"
        assert driver.find_element("id", "transcript").get_attribute("aria-live") == "polite"
        assert driver.find_element("id", "lag").is_displayed()
        # The settings are tucked away (their summary says what is chosen), the caption
        # controls are at hand.
        assert not driver.find_element("id", "name").is_displayed()
        assert "language detected" in driver.find_element("id", "settings-summary").text
        assert driver.find_element("id", "read").is_displayed()
        assert driver.find_element("id", "caption-larger").is_displayed()
        browser.save_screenshot(driver, "serve-empty")

        # The first caption replaces the guide.
        _caption(driver, text="Hello there.")
        assert not guide.is_displayed()
        assert browser.read_page(driver)["lines"][0]["text"] == "Hello there."


# -- the microphone: level meter, timer, keys ---------------------------------------------------

SAMPLE_METER = """
window.meterSamples = [];
setInterval(() => {
  const started = window.roomscribe.captureStartedAt;
  if (!started) return;
  window.meterSamples.push([(Date.now() - started) / 1000,
    Number(document.getElementById('level').getAttribute('aria-valuenow')),
    document.getElementById('timer').textContent]);
}, 100);
"""


def test_the_level_meter_moves_when_the_microphone_hears_speech_and_the_timer_counts(
    webrtc_ready, server, speaking_mic
):
    with browser.chromium(speaking_mic) as driver:
        driver.get(f"{server.url}/?session=meter-{secrets.token_hex(3)}&name=Meter&language=en")
        driver.execute_script(SAMPLE_METER)
        driver.find_element("id", "start").click()
        _connected(driver)
        browser.wait_for(
            lambda: any(t >= LEAD_SILENCE + 4 for t, _, _ in driver.execute_script("return window.meterSamples")),
            30,
            message="six seconds of meter samples",
        )
        samples = driver.execute_script("return window.meterSamples")
        assert _visible(driver, "#stop") and not _visible(driver, "#start")

        silent = [level for t, level, _ in samples if 0.3 <= t <= LEAD_SILENCE - 0.4]
        speaking = [level for t, level, _ in samples if LEAD_SILENCE + 0.5 <= t <= LEAD_SILENCE + 4]
        assert silent and max(silent) <= 5, f"the meter moved in silence: {silent}"
        assert speaking and max(speaking) >= 40, f"the meter hardly moved with speech: {speaking}"
        assert np.median(speaking) >= 15, speaking

        # mm:ss from the moment the microphone opened.
        for t, _, shown in samples:
            assert re.fullmatch(r"\d\d:\d\d", shown), shown
            minutes, seconds = map(int, shown.split(":"))
            assert abs(minutes * 60 + seconds - t) <= 1.2, (t, shown)
        assert samples[-1][2] >= "00:05", samples[-1]

        browser.stop_microphone(driver)
        browser.wait_for(lambda: _phase(driver) == "idle", 10, message="the page to stop")
        time.sleep(0.5)
        assert driver.find_element("id", "level").get_attribute("aria-valuenow") == "0"
        kept = driver.find_element("id", "timer").text
        time.sleep(1.2)
        assert driver.find_element("id", "timer").text == kept, "the timer ran on after Stop"


def test_space_starts_and_stops_captioning_except_while_typing(webrtc_ready, server, quiet_mic):
    from selenium.webdriver.common.keys import Keys

    with browser.chromium(quiet_mic) as driver:
        driver.get(f"{server.url}/?session=keys-{secrets.token_hex(3)}&name=Keys&language=en")
        assert "Space" in driver.find_element("id", "record-hint").text  # the shortcut is told

        # Typing a space in a field types a space.
        driver.find_element("css selector", "#settings > summary").click()
        vocabulary = driver.find_element("id", "prompt")
        vocabulary.send_keys("Minji Kim")
        assert vocabulary.get_attribute("value") == "Minji Kim"
        time.sleep(0.5)
        assert _phase(driver) == "idle" and driver.execute_script("return window.roomscribe.captureStartedAt") is None

        # Elsewhere, Space starts...
        driver.execute_script("document.activeElement.blur()")
        _press(driver, Keys.SPACE)
        first = _connected(driver)
        assert _phase(driver) == "recording" and _visible(driver, "#stop") and not _visible(driver, "#start")
        # ...and stops.
        _press(driver, Keys.SPACE)
        browser.wait_for(lambda: _phase(driver) == "idle", 10, message="Space to stop captioning")
        assert _visible(driver, "#start") and driver.find_element("id", "stop").get_attribute("disabled")
        assert driver.find_element("id", "status").text == "stopped"

        # On the record button itself, Enter works too, and the focus stays on the control.
        driver.find_element("id", "start").send_keys(Keys.ENTER)
        _connected(driver, first)
        assert driver.switch_to.active_element.get_attribute("id") == "stop"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        browser.wait_for(lambda: _phase(driver) == "idle", 10, message="Enter on Stop to stop captioning")
        assert driver.switch_to.active_element.get_attribute("id") == "start"
        assert browser.read_page(driver)["error"] == ""


# -- reading the captions ---------------------------------------------------------------------

CAPTION_FONT = """
const text = document.querySelector('#transcript .line .text');
return parseFloat(getComputedStyle(text).fontSize);
"""


def test_the_caption_size_control_changes_the_caption_font_size_and_survives_a_reload(
    chromium_available, server, quiet_mic
):
    with browser.chromium(quiet_mic) as driver:
        driver.get(server.url + "/")
        _caption(driver, text="Printing, in the only sense with which we are at present concerned.")
        default = driver.execute_script(CAPTION_FONT)
        assert default >= 24, f"captions of {default}px are not large"
        driver.find_element("id", "caption-larger").click()
        driver.find_element("id", "caption-larger").click()
        larger = driver.execute_script(CAPTION_FONT)
        assert larger > default + 6, (default, larger)
        assert driver.find_element("id", "caption-size").text == f"{larger:g} px"

        driver.refresh()
        _caption(driver, text="Again.")
        assert driver.execute_script(CAPTION_FONT) == larger
        assert driver.find_element("id", "caption-size").text == f"{larger:g} px"

        smaller = driver.find_element("id", "caption-smaller")
        for _ in range(20):  # down to the smallest, which is still readable
            if not smaller.is_enabled():
                break
            smaller.click()
        smallest = driver.execute_script(CAPTION_FONT)
        assert 16 <= smallest < default and not driver.find_element("id", "caption-smaller").is_enabled()


def _luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+(?:\.\d+)?", css)[:3])
    channel = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * channel[0] + 0.7152 * channel[1] + 0.0722 * channel[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


COLOURS = """
const box = document.getElementById('transcript');
const line = box.querySelector('.line');
const style = (el) => getComputedStyle(el);
return {background: style(box).backgroundColor, page: style(document.body).backgroundColor,
        text: style(line.querySelector('.text')).color, speaker: style(line.querySelector('.speaker')).color,
        tail: style(line.querySelector('.tail')).color, hint: style(document.getElementById('record-hint')).color,
        card: style(document.getElementById('recorder')).backgroundColor};
"""


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_page_follows_the_system_colour_scheme_with_high_contrast_captions(
    chromium_available, server, quiet_mic, scheme
):
    from selenium.webdriver.common.keys import Keys

    with browser.chromium(quiet_mic) as driver:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        driver.get(server.url + "/")
        _caption(driver, text="The art of printing.", tail="from which", final=False)
        colours = driver.execute_script(COLOURS)
        background = _luminance(colours["background"])
        if scheme == "dark":
            assert background < 0.03 and _luminance(colours["page"]) < 0.03, colours
        else:
            assert background > 0.9 and _luminance(colours["page"]) > 0.8, colours
        assert _contrast(colours["text"], colours["background"]) >= 7, colours
        assert _contrast(colours["speaker"], colours["background"]) >= 4.5, colours
        assert _contrast(colours["tail"], colours["background"]) >= 4.5, colours
        assert _contrast(colours["hint"], colours["card"]) >= 4.5, colours

        # A keyboard user sees where the focus is: Tab to the record button shows a ring.
        driver.execute_script("document.querySelector('a.skip').focus()")  # the first stop on the page
        _press(driver, Keys.TAB)
        focused = driver.switch_to.active_element
        assert focused.get_attribute("id") == "start"
        assert focused.value_of_css_property("outline-style") == "solid"
        assert float(focused.value_of_css_property("outline-width").removesuffix("px")) >= 2


CONTINUED = "return [...document.querySelectorAll('#transcript .line')].map((el) => el.classList.contains('continued'))"


def test_a_line_a_final_with_no_words_retracts_leaves_the_page(chromium_available, server, quiet_mic):
    with browser.chromium(quiet_mic) as driver:
        driver.get(server.url + "/")
        _caption(driver, segment_id="S1", text="Hello there.")
        _caption(driver, segment_id="S2", text="Pips.", speaker="Bo", participant="P_2", color=1)
        _caption(driver, segment_id="S3", text="How are you?")
        assert driver.execute_script(CONTINUED) == [False, False, False]

        # A second hearing found S2 was the tail of a word before it: its revised final is empty.
        _caption(driver, segment_id="S2", text="", speaker="Bo", participant="P_2", color=1)
        page = browser.read_page(driver)
        assert [line["text"] for line in page["lines"]] == ["Hello there.", "How are you?"]
        # Ana's two lines now follow each other: the second shows no name of its own.
        assert driver.execute_script(CONTINUED) == [False, True]
        # A final with no words for a line the page never showed changes nothing.
        _caption(driver, segment_id="S9", text="")
        assert len(browser.read_page(driver)["lines"]) == 2


# -- files ------------------------------------------------------------------------------------

WATCH_FILE_PANEL = """
window.fileSeen = [];
const bar = document.getElementById('file-progress');
const note = () => window.fileSeen.push({
  state: document.getElementById('file-state').textContent,
  value: bar.hasAttribute('value') ? bar.value : null,
  shown: bar.offsetParent !== null});
new MutationObserver(note).observe(document.getElementById('file-job'),
  {subtree: true, childList: true, characterData: true, attributes: true});
"""


def _file_done(driver, timeout: float = 120) -> dict:
    def finished():
        phase = driver.execute_script("return window.roomscribe.files.phase")
        return phase if phase in ("done", "error") else None

    browser.wait_for(finished, timeout, message="the file to be transcribed")
    return driver.execute_script("return window.roomscribe.files")


READ_SEGMENTS = """
return [...document.querySelectorAll('#file-segments .segment')].map((el) => ({
  time: el.querySelector('.time').textContent, text: el.querySelector('.text').textContent,
  speaker: el.querySelector('.speaker') ? el.querySelector('.speaker').textContent : null,
  translation: el.querySelector('.translation') ? el.querySelector('.translation').textContent : null}));
"""


@pytest.mark.screenshots
def test_a_chosen_file_shows_a_progress_bar_then_its_segments_with_times(
    chromium_available, server, quiet_mic, two_sentences
):
    path, reference = two_sentences
    with browser.chromium(quiet_mic) as driver:
        driver.set_window_size(*browser.SCREENSHOT_SIZE)
        driver.get(server.url + "/")
        driver.execute_script(WATCH_FILE_PANEL)
        driver.find_element("id", "file-input").send_keys(str(path))
        files = _file_done(driver)
        assert files["phase"] == "done", driver.find_element("id", "file-error").text
        seen = driver.execute_script("return window.fileSeen")

        # The bar was on screen: the upload's share, then how much audio is transcribed.
        states = [s["state"] for s in seen]
        assert any(s.startswith("Uploading") for s in states), states
        assert any(s["state"] == "Uploading… 100%" and s["value"] == 1 and s["shown"] for s in seen), seen
        progress = [s for s in seen if re.fullmatch(r"Transcribing… \d+:\d\d of 0:1[45]", s["state"])]
        assert progress and all(s["shown"] for s in progress), states
        assert states[-1].startswith("Done"), states
        assert [entry["phase"] for entry in files["log"]] == ["uploading", "transcribing", "done"]

        segments = driver.execute_script(READ_SEGMENTS)
        assert len(segments) >= 2, segments
        spans = []
        for segment in segments:
            match = re.fullmatch(r"(\d+):(\d\d)–(\d+):(\d\d)", segment["time"])
            assert match, segment["time"]
            start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
            spans.append((start, end))
        assert spans[0][0] == 0 and all(a <= b for a, b in spans) and spans == sorted(spans), spans
        assert 13 <= spans[-1][1] <= 16, spans
        assert all(s["speaker"] is None and s["translation"] is None for s in segments)
        heard = " ".join(s["text"] for s in segments)
        assert wer(reference, heard) < 0.3, heard
        summary = driver.find_element("id", "file-summary").text
        assert re.fullmatch(rf"0:1[45] of audio · English \(en\) · {len(segments)} segments", summary), summary
        assert driver.find_element("id", "file-error").text == ""

        driver.execute_script("document.getElementById('files').scrollIntoView({block: 'center'})")
        browser.save_screenshot(driver, "serve-file")


DROP = """
const [name, bytes] = arguments;
const transfer = new DataTransfer();
transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'audio/wav'}));
const target = document.getElementById('transcript');
for (const kind of ['dragenter', 'dragover', 'drop']) {
  target.dispatchEvent(new DragEvent(kind, {dataTransfer: transfer, bubbles: true, cancelable: true}));
}
"""


def _server_says(server, name: str, data: bytes) -> tuple[int, str]:
    """What POST /transcribe answers to `data` uploaded as `name` (status, error message)."""
    boundary = "roomscribe-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        server.url + "/transcribe", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    return refused.value.code, json.loads(refused.value.read())["error"]["message"]


def test_a_dropped_file_that_is_not_audio_shows_the_servers_error(chromium_available, server, quiet_mic):
    garbage = b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all" * 40
    status, message = _server_says(server, "notes.wav", garbage)
    assert status >= 400 and message
    with browser.chromium(quiet_mic) as driver:
        driver.get(server.url + "/")
        driver.execute_script(DROP, "notes.wav", list(garbage))
        files = _file_done(driver, 30)
        assert files["phase"] == "error"
        error = driver.find_element("id", "file-error")
        assert error.is_displayed() and error.get_attribute("role") == "alert"
        assert error.text == f"Could not transcribe notes.wav: {message}"
        assert not _visible(driver, "#file-result") and not _visible(driver, "#file-progress")
        assert browser.read_page(driver)["error"] == ""  # the captions' own error line is untouched


@pytest.mark.parametrize("translator", ["scripted", "none"])
def test_a_file_read_in_another_language_shows_translations_or_says_why_not(
    chromium_available, engine, quiet_mic, eval_dir, translator
):
    clip = eval_dir / "asr/en/ljspeech/LJ001-0107.flac"
    scripted = ScriptedTranslator() if translator == "scripted" else None
    with (
        translating_server(engine, scripted, unavailable="no translator here") as server,
        browser.chromium(quiet_mic) as driver,
    ):
        driver.get(server.url + "/?read=es")
        driver.find_element("id", "file-input").send_keys(str(clip))
        files = _file_done(driver)
        assert files["phase"] == "done", driver.find_element("id", "file-error").text
        segments = driver.execute_script(READ_SEGMENTS)
        assert segments and all(s["text"] for s in segments)
        notice = driver.find_element("id", "file-notice")
        if scripted is not None:
            assert [s["translation"] for s in segments] == [f"[es] {s['text']}" for s in segments]
            assert not notice.is_displayed()
        else:
            assert all(s["translation"] is None for s in segments)
            assert notice.is_displayed() and "no translator here" in notice.text, notice.text
            assert driver.find_element("id", "file-error").text == ""
