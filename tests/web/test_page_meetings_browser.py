"""The page's past meetings, in headless Chromium: the tenant's meetings listed newest first,
one opened with its lines (times, who spoke, the text, a translation where the reader's
language has one); another tenant's meetings never shown."""

from __future__ import annotations

import time

import numpy as np

from roomscribe.store import Segment, open_store
from roomscribe.web.config import ServerConfig
from support import browser
from support.serving import running_server


def test_the_page_lists_the_tenants_meetings_and_opens_one(engine, chromium_available, tmp_path):
    data_dir = tmp_path / "records"
    with open_store(None, data_dir) as store:
        secret = store.create_key("acme")[1]
        other = store.create_key("globex")[1]
        store.open_meeting("acme", "standup", source="page", title="Monday standup", started_at=time.time() - 3600)
        store.save_segments(
            "acme",
            "standup",
            [
                Segment(
                    "s1",
                    "Minji",
                    2.0,
                    4.5,
                    "Let us begin with the release.",
                    language="en",
                    translations={"ko": "출시부터 시작합시다."},
                ),
                Segment("s2", "Sam", 65.0, 67.0, "The build is green.", language="en"),
            ],
        )
        store.open_meeting("acme", "review", source="upload", title="Design review")
        store.open_meeting("globex", "secret-plans", source="page", title="Globex board")
    silence = browser.write_fake_mic(np.zeros(16000, np.float32), tmp_path / "mic.wav")

    with running_server(engine, ServerConfig(port=0, data_dir=str(data_dir))) as server:
        with browser.chromium(silence) as driver:
            driver.get(f"{server.url}/?key={secret}")
            driver.execute_script("document.getElementById('meetings').open = true")
            titles = browser.wait_for(
                lambda: [b.text for b in driver.find_elements("css selector", "#meeting-list button.meeting")],
                20,
                message="the meeting list",
            )
            assert titles[0].startswith("Design review · upload") and titles[1].startswith("Monday standup · page")
            assert len(titles) == 2 and not any("Globex" in t for t in titles)
            assert "2 lines" in titles[1]

            driver.find_element("css selector", "#read").send_keys("한국어")  # reads Korean
            driver.find_elements("css selector", "#meeting-list button.meeting")[1].click()
            lines = browser.wait_for(
                lambda: [p.text for p in driver.find_elements("css selector", "#meeting-lines .line")],
                20,
                message="the meeting's lines",
            )
            assert lines == ["0:02Minji출시부터 시작합시다.", "1:05SamThe build is green."]
            summary = driver.find_element("css selector", "#meeting-summary").text
            assert summary.startswith("2 lines, 2 speakers, 1:07")

            driver.get(f"{server.url}/?key={other}")
            driver.execute_script("sessionStorage.clear()")
            driver.get(f"{server.url}/?key={other}")
            driver.execute_script("document.getElementById('meetings').open = true")
            titles = browser.wait_for(
                lambda: [b.text for b in driver.find_elements("css selector", "#meeting-list button.meeting")],
                20,
                message="the other tenant's list",
            )
            assert len(titles) == 1 and titles[0].startswith("Globex board")
