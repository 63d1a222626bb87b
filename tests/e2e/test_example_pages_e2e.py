"""The example frontends (examples/web, built from npm: livekit-client, and components-react's
useTranscriptions()) in headless Chromium, joined to the emulated room with the real caption
agent. A browser participant speaks through Chromium's fake microphone (real speech), a
second participant speaks through the Python SDK, and a viewer watches from the React page.
Checks what each page shows, that interims are replaced in place by their final, and that
pause, resume and set_language sent from the page reach the agent."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("aiortc")

from test_room_e2e import FINAL, TOPIC, caption_room, reference, speech

from livekit import rtc
from support import browser
from support.examples import static_site
from support.livekit_frames import frames_48k
from support.speech import wer

ROOM = "standup"
BROWSER_CLIP, SDK_CLIP, SDK_CLIP_AFTER = "LJ001-0001", "LJ001-0159", "LJ001-0085"

# Installed in each tab before its page loads: every caption line ever shown as an interim is
# marked, so a line that is final later shows the page replaced the interim in place.
MARK_INTERIMS = """
new MutationObserver(() => {
  for (const line of document.querySelectorAll('[data-segment][data-final="false"]')) {
    line.setAttribute('data-seen', 'interim');
  }
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true,
                      attributeFilter: ['data-final']});
"""

# What a page shows, by the examples' DOM contract: a box per participant, a line per segment.
READ_CAPTIONS = """
const out = {};
for (const box of document.querySelectorAll('[data-participant]')) {
  out[box.dataset.participant] = [...box.querySelectorAll('[data-segment]')].map((line) => ({
    segment: line.dataset.segment, final: line.dataset.final === 'true',
    seen: line.getAttribute('data-seen') || '',
    text: (line.querySelector('.text') || line).textContent.trim()}));
}
return {captions: out, connection: (document.getElementById('connection') || {}).textContent || '',
        state: (document.getElementById('state') || {}).textContent || ''};
"""


async def open_page(driver, url: str, *, new_tab: bool) -> str:
    """Open `url` (in a new tab, or this one) with the interim marker installed; its handle."""

    def _open():
        if new_tab:
            driver.switch_to.new_window("tab")
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MARK_INTERIMS})
        driver.get(url)
        return driver.current_window_handle

    return await asyncio.to_thread(_open)


class SdkSpeaker:
    """A participant on the Python SDK who publishes a microphone track and speaks on cue."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.room = rtc.Room()
        self.source = rtc.AudioSource(48000, 1)

    async def join(self) -> str:
        await self.room.connect(self.url, self.token)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await self.room.local_participant.publish_track(track, options)
        return publication.sid

    async def say(self, audio: np.ndarray) -> None:
        for frame in frames_48k(audio):
            await self.source.capture_frame(frame)  # paced: the source's queue holds 1 s

    async def silence(self, seconds: float) -> None:
        await self.say(np.zeros(int(seconds * 16000), np.float32))

    async def leave(self) -> None:
        await self.room.disconnect()


def shown_text(lines: list[dict]) -> str:
    return " ".join(line["text"] for line in lines if line["final"])


async def read(driver, handle: str) -> dict:
    def _read():
        driver.switch_to.window(handle)
        return driver.execute_script(READ_CAPTIONS)

    return await asyncio.to_thread(_read)


async def wait_page(driver, handle: str, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        page = await read(driver, handle)
        if predicate(page):
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the page shows {page}")
        await asyncio.sleep(0.3)


async def click(driver, handle: str, script: str) -> None:
    def _click():
        driver.switch_to.window(handle)
        driver.execute_script(script)

    await asyncio.to_thread(_click)


def bot_attribute(emu, key: str) -> str | None:
    for p in emu.participants(ROOM):
        if p.is_agent:
            return p.attributes.get(key)
    return None


@pytest.mark.screenshots
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_the_example_pages_show_a_browser_speaker_and_an_sdk_speaker_captioned_by_the_agent(
    emulator_host, eval_dir, manifest, monkeypatch, example_pages, tmp_path
):
    pad = np.zeros(16000, np.float32)
    mic = browser.write_fake_mic(np.concatenate([pad, speech(eval_dir, BROWSER_CLIP, pad=3.0)]), tmp_path / "mic.wav")

    async def scenario():
        async with caption_room(emulator_host, monkeypatch) as emu:
            emu.ensure_room(ROOM)
            dispatch = await (await emu.create_dispatch(ROOM, "roomscribe", '{"language": "en"}')).wait()
            assert dispatch.state == "assigned", dispatch.error
            await emu.recorder.wait_for(lambda _: bot_attribute(emu, "roomscribe.captions") == "on", 30)

            with static_site(example_pages) as site, browser.chromium(mic, log_path=tmp_path / "chromedriver.log") as d:
                # The viewer's React page first (it shows everyone), then the speaking browser.
                viewer = f"{site}/react.html#url={emu.url}&token={emu.token('dave', ROOM)}"
                react = await open_page(d, viewer, new_tab=False)
                await wait_page(d, react, lambda p: p["connection"] == "connected", 30, "the React page to connect")
                speaking = f"{site}/index.html#url={emu.url}&token={emu.token('alice', ROOM)}&mic=1"
                plain = await open_page(d, speaking, new_tab=True)
                await wait_page(d, plain, lambda p: p["connection"] == "connected", 30, "the page to connect")

                carol = SdkSpeaker(emu.url, emu.token("carol", ROOM))
                carol_track = await carol.join()
                await carol.say(speech(eval_dir, SDK_CLIP, pad=2.0))

                def both_final(page):
                    shown = page["captions"]
                    return all(shown_text(shown.get(who, [])) for who in ("alice", "carol"))

                for handle in (plain, react):
                    await wait_page(d, handle, both_final, 60, "both speakers' finals")
                await asyncio.sleep(3.0)  # the rest of their finals
                pages = {"plain": await read(d, plain), "react": await read(d, react)}
                await asyncio.to_thread(d.switch_to.window, plain)
                await asyncio.to_thread(browser.save_screenshot, d, "example-livekit-client")
                await asyncio.to_thread(d.switch_to.window, react)
                await asyncio.to_thread(browser.save_screenshot, d, "example-react")

                # Controls sent from the page (topic roomscribe.control) reach the agent.
                await click(d, plain, "document.getElementById('pause').click()")
                await emu.recorder.wait_for(lambda _: bot_attribute(emu, "roomscribe.captions") == "paused", 15)
                await wait_page(d, plain, lambda p: "paused" in p["state"], 15, "the page to say captions are paused")
                await click(d, plain, "document.getElementById('resume').click()")
                await emu.recorder.wait_for(lambda _: bot_attribute(emu, "roomscribe.captions") == "on", 15)
                await click(
                    d,
                    plain,
                    "document.getElementById('lang-who').value = 'carol';"
                    "document.getElementById('lang').value = 'fr';"
                    "document.getElementById('set-lang').click();",
                )
                await asyncio.sleep(1.0)
                before = {r.attributes["lk.segment_id"] for r in emu.recorder.streams(TOPIC, sender_identity="carol")}
                await carol.say(speech(eval_dir, SDK_CLIP_AFTER, pad=2.0))
                later = await emu.recorder.wait_for(
                    lambda r: [
                        rec
                        for rec in r.streams(TOPIC, sender_identity="carol", **FINAL)
                        if rec.attributes["lk.segment_id"] not in before
                    ],
                    60,
                )
                await carol.leave()
            return emu, pages, carol_track, later

    emu, pages, carol_track, later = asyncio.run(scenario())

    captions = emu.recorder.streams(TOPIC)
    tracks = {rec.sender_identity: rec.attributes["lk.transcribed_track_id"] for rec in captions}
    assert tracks["carol"] == carol_track  # the SDK participant's own track, forwarded by the room
    assert tracks["alice"].startswith("TR_") and tracks["alice"] != carol_track

    for name, page in pages.items():
        shown = page["captions"]
        assert set(shown) >= {"alice", "carol"}, (name, shown)
        for who, clip in (("alice", BROWSER_CLIP), ("carol", SDK_CLIP)):
            said = reference(manifest, clip)
            assert wer(said, shown_text(shown[who])) < 0.35, (name, who, shown[who])
            # One line per segment: every caption the agent sent for a segment went to one line,
            # and a line first seen as an interim is the line that now holds the final.
            segments = [line["segment"] for line in shown[who]]
            assert len(segments) == len(set(segments)), (name, who, segments)
            sent = {rec.attributes["lk.segment_id"] for rec in captions if rec.sender_identity == who}
            assert set(segments) <= sent, (name, who)
        interim_then_final = [line for who in shown for line in shown[who] if line["seen"] and line["final"]]
        assert interim_then_final, f"{name}: no line was seen as an interim and then final"
        assert "roomscribe" not in " ".join(shown), "the bot itself is not a speaker"

    # set_language from the page: carol's next sentence is captioned as French.
    assert all(rec.attributes.get("roomscribe.language") == "fr" for rec in later), [rec.attributes for rec in later]
