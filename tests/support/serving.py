"""Run `roomscribe serve`'s app in-process, on a thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from roomscribe.session.scheduler import worker_for
from roomscribe.web.app import build_app
from roomscribe.web.config import ServerConfig


@dataclass
class RunningServer:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop

    def call(self, fn, *args):
        """Run `fn(*args)` on the server's loop and return its result (for inspecting state)."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


@contextlib.contextmanager
def running_server(
    engine,
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    setup: Callable[[web.Application], None] | None = None,
):
    """`setup(app)` changes the app before it starts (what a test puts in its keys)."""
    config = config or ServerConfig(host=host, port=0)
    scratch = None
    if config.records and config.data_dir is None and config.database is None:
        # Meeting records of a test server go to a directory of its own, never the user's.
        scratch = tempfile.TemporaryDirectory(prefix="roomscribe-records-")
        config = dataclasses.replace(config, data_dir=scratch.name)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start():
        app = build_app(config, worker_for(engine))
        if setup is not None:
            setup(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        holder.update(app=app, runner=runner, port=site._server.sockets[0].getsockname()[1])

    def serve():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001
            holder["error"] = exc
        started.set()
        if "error" not in holder:
            loop.run_forever()

    thread = threading.Thread(target=serve, name="roomscribe-test-server", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield RunningServer(f"http://{host}:{holder['port']}", holder["app"], loop)
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if scratch is not None:
            scratch.cleanup()
