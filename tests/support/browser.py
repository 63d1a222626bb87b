"""Real headless Chromium driving the caption page (Debian's chromium + chromium-driver).

The page captures a *fake* microphone: Chromium plays a WAV file (`--use-file-for-fake-audio-
capture`) from the moment getUserMedia opens the device, so `window.roomscribe.captureStartedAt`
is (to a few milliseconds) time 0 of the file. WebRTC ignores loopback, so the browser and the
server must share a network namespace with another interface (tests/emulator/netns.py); a
Chromium started from a process in that namespace inherits it.

Used by tests/test_page_browser.py and bench/page_latency.py; only stdlib, numpy, soundfile, av
and selenium here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("ROOMSCRIBE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ROOMSCRIBE_CHROMEDRIVER", "/usr/bin/chromedriver")
FAKE_MIC_RATE = 48000


def unavailable() -> str | None:
    """Why a real browser cannot run here (None when it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found (install Debian's {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def write_fake_mic(audio: np.ndarray, path: Path, rate: int = 16000) -> Path:
    """Mono float audio at `rate` as a 48 kHz 16-bit PCM WAV for Chromium's fake microphone."""
    import av
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate != FAKE_MIC_RATE:
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=FAKE_MIC_RATE)
        parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    sf.write(path, np.clip(audio, -1.0, 1.0), FAKE_MIC_RATE, subtype="PCM_16")
    return path


def chromium_options(fake_mic: Path, extra: list[str] | None = None):
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--mute-audio",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic}%noloop",
        # A page that is not focused or visible must not be throttled: it is all we watch.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        *(extra or []),
    ):
        options.add_argument(arg)
    return options


@contextlib.contextmanager
def chromium(fake_mic: Path, *, timeout: float = 60.0, log_path: Path | None = None) -> Iterator:
    """A headless Chromium (selenium WebDriver) whose microphone plays `fake_mic` once.
    Always quit, whatever happens inside; a driver that will not quit is killed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="roomscribe-chromium-")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_path) if log_path else os.devnull)
    options = chromium_options(Path(fake_mic), [f"--user-data-dir={profile}"])
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(timeout)
        driver.set_script_timeout(timeout)
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 - a dead browser must not hide the test's own failure
            with contextlib.suppress(Exception):
                service.stop()
        with contextlib.suppress(Exception):
            proc = service.process
            if proc is not None and proc.poll() is None:
                proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.25, message: str = "condition"
) -> object:
    """Poll until `predicate()` is truthy; its value, or TimeoutError naming `message`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(interval)


# What the page shows, read in one script call (fewer round trips, one consistent snapshot).
READ_PAGE = """
const lines = [...document.querySelectorAll('#transcript .line')].map((el) => ({
  speaker: el.querySelector('.speaker').textContent,
  text: el.querySelector('.text').textContent,
  tail: el.querySelector('.tail').textContent,
  final: el.classList.contains('final'),
  color: [...el.classList].find((c) => /^c[0-9]+$/.test(c)) || null,
}));
const rs = window.roomscribe || {};
return {lines, lag: document.getElementById('lag').textContent,
        status: document.getElementById('status').textContent,
        error: document.getElementById('error').textContent,
        participant: rs.state ? rs.state.participant : null,
        session: rs.state ? rs.state.session : null,
        captureStartedAt: rs.captureStartedAt || null,
        messages: rs.log ? rs.log.length : 0};
"""


def read_page(driver) -> dict:
    return driver.execute_script(READ_PAGE)


def read_log(driver) -> list[dict]:
    """window.roomscribe.log: every data-channel message with its Date.now() arrival `at`."""
    return driver.execute_script("return (window.roomscribe && window.roomscribe.log) || [];")


def page_text(page: dict, final_only: bool = True, speaker: str | None = None) -> str:
    return " ".join(
        line["text"]
        for line in page["lines"]
        if (line["final"] or not final_only) and (speaker is None or line["speaker"] == speaker)
    )


def wait_until_settled(
    driver, *, at_least: float, quiet: float, timeout: float, progress: Callable[[dict], None] | None = None
) -> dict:
    """Wait `at_least` seconds, then until the page's committed text has not changed for
    `quiet` seconds and no line is open (or `timeout` passes). The last snapshot."""
    started = time.monotonic()
    last_key, changed_at = None, time.monotonic()
    page = read_page(driver)
    while True:
        page = read_page(driver)
        if progress:
            progress(page)
        key = tuple((line["text"], line["tail"], line["final"]) for line in page["lines"])
        now = time.monotonic()
        if key != last_key:
            last_key, changed_at = key, now
        open_lines = any(not line["final"] for line in page["lines"])
        if (
            now - started >= at_least
            and now - changed_at >= quiet
            and (not open_lines or now - changed_at >= 2 * quiet)
        ):
            return page
        if now - started > timeout:
            return page
        time.sleep(0.5)


def stop_microphone(driver) -> None:
    """Press the page's Stop: the server captions the last words and sends the finals."""
    driver.execute_script("const b = document.getElementById('stop'); if (!b.disabled) b.click();")


# -- screenshots ---------------------------------------------------------------------------------

SCREENSHOT_SIZE = (1280, 900)


def screenshots_dir() -> Path | None:
    """Where the page tests save PNGs of what users see (`ROOMSCRIBE_SCREENSHOTS`), or None."""
    folder = os.environ.get("ROOMSCRIBE_SCREENSHOTS")
    return Path(folder) if folder else None


def save_screenshot(driver, name: str) -> Path | None:
    """`name`.png of what the browser shows (a 1280x900 viewport) in `screenshots_dir()`;
    nothing without ROOMSCRIBE_SCREENSHOTS. The path written, or None."""
    folder = screenshots_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if tuple(inner) != SCREENSHOT_SIZE:  # the viewport, not the window with its frame
        size = driver.get_window_size()
        driver.set_window_size(
            size["width"] + SCREENSHOT_SIZE[0] - inner[0], size["height"] + SCREENSHOT_SIZE[1] - inner[1]
        )
        time.sleep(0.5)  # let the page lay itself out again
    path = folder / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"the browser did not save {path}")
    return path
