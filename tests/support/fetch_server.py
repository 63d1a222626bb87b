"""A media server on 127.0.0.1 for the URL-fetch tests: real audio, and the ways a server a
client names can misbehave (redirects anywhere, bodies too large, pages and playlists
instead of media, answers that never come). It runs on a thread with its own event loop, so
that each test can fetch from it with `asyncio.run`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from aiohttp import web

SAMPLE_RATE = 16000
HANG_SECONDS = 30  # how long a hanging handler waits at most (it is released at teardown)


def wav_bytes(seconds: float = 0.25) -> bytes:
    """A real 16 kHz mono PCM WAV: a quiet 440 Hz tone."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.1 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(samples.tobytes())
    return out.getvalue()


def flac_bytes(seconds: float = 0.25) -> bytes:
    out = io.BytesIO()
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(out, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SAMPLE_RATE, format="FLAC")
    return out.getvalue()


NOT_MEDIA = {  # name: body
    "html": b"<!DOCTYPE html>\n<html><head><title>Not audio</title></head><body></body></html>\n",
    "m3u": b"#EXTM3U\n#EXTINF:-1,Radio\nhttp://169.254.169.254/latest/meta-data\n",
    "pls": b"[playlist]\nFile1=http://10.0.0.1/a.mp3\nNumberOfEntries=1\n",
    "asx": b'<asx version="3.0"><entry><ref href="http://10.0.0.1/a.wma"/></entry></asx>\n',
    "xml": b'<?xml version="1.0"?>\n<smil><body><audio src="http://10.0.0.1/a.mp3"/></body></smil>\n',
    "text": b"just some text, long enough to be sniffed\n",
}


@dataclass
class MediaServer:
    port: int
    loop: asyncio.AbstractEventLoop
    hosts: list[str] = field(default_factory=list)  # the Host header of every request

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _app(server_ref: dict, stop: asyncio.Event) -> web.Application:
    wav, flac = wav_bytes(), flac_bytes()

    async def hang() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HANG_SECONDS)

    @web.middleware
    async def record_host(request: web.Request, handler):
        server_ref["server"].hosts.append(request.headers.get("Host", ""))
        return await handler(request)

    async def clip_wav(request):
        return web.Response(body=wav, content_type="audio/wav")

    async def clip_flac(request):
        return web.Response(body=flac, content_type="audio/flac")

    async def redirect(request):
        """302 to the `to` query parameter, whatever it is."""
        raise web.HTTPFound(request.query["to"])

    async def hops(request):
        """/hops/N redirects N times (to /hops/N-1, relative) before the audio."""
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(body=wav, content_type="audio/wav")
        raise web.HTTPFound(f"/hops/{left - 1}")

    async def big(request):
        """A WAV head and 1 MiB, with its Content-Length."""
        return web.Response(body=wav[:44] + bytes(1024**2), content_type="audio/wav")

    async def big_chunked(request):
        """A WAV head and up to 8 MiB, chunked: no Content-Length."""
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client stops reading at its limit
            await response.write(wav[:44])
            for _ in range(128):
                await response.write(bytes(64 * 1024))
        return response

    async def not_media(request):
        return web.Response(body=NOT_MEDIA[request.match_info["kind"]], content_type="text/plain")

    async def playlist_then_hang(request):
        """A playlist's first lines, then nothing for a long time: a fetch that waits for the
        whole body before judging it waits until this is released."""
        response = web.StreamResponse(headers={"Content-Type": "audio/x-mpegurl"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(NOT_MEDIA["m3u"])
            await hang()
        return response

    async def slow(request):
        await hang()
        return web.Response(body=wav, content_type="audio/wav")

    async def gzipped(request):
        """A WAV sent gzip-encoded whatever the client asked for."""
        import gzip

        return web.Response(body=gzip.compress(wav), headers={"Content-Type": "audio/wav", "Content-Encoding": "gzip"})

    app = web.Application(middlewares=[record_host])
    app.router.add_get("/clip.wav", clip_wav)
    app.router.add_get("/clip.flac", clip_flac)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/hops/{n}", hops)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/not-media/{kind}", not_media)
    app.router.add_get("/playlist-then-hang", playlist_then_hang)
    app.router.add_get("/slow", slow)
    app.router.add_get("/gzipped", gzipped)
    return app


@contextlib.contextmanager
def media_server() -> Iterator[MediaServer]:
    """The server, listening on 127.0.0.1 only, on a free port."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start():
        stop = asyncio.Event()
        runner = web.AppRunner(_app(holder, stop), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        holder.update(runner=runner, stop=stop, server=MediaServer(port, loop))

    def serve():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            holder["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True, name="media-server")
    thread.start()
    started.wait(10)
    if "error" in holder:
        raise holder["error"]
    try:
        yield holder["server"]
    finally:

        async def shut():
            holder["stop"].set()
            await holder["runner"].cleanup()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
