"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's websocket
client (no Selenium, no driver binary): enough to load a page, read and click its
DOM, and take a screenshot.

    async with headless_chromium() as page:
        await page.goto(url)
        text = await page.evaluate("document.title")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from smppd.runtime.demo import stop_process

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def find_chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Chromium found: scripts/services.sh installs Debian's chromium "
                         "(apt-get install -y chromium)")


class CdpError(Exception):
    pass


class Page:
    """One page target; ``send`` a CDP command and get its result."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            waiter = self._pending.pop(data.get("id", -1), None)
            if waiter is not None and not waiter.done():
                if "error" in data:
                    waiter.set_exception(CdpError(str(data["error"])))
                else:
                    waiter.set_result(data.get("result", {}))
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(CdpError("the browser closed the connection"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = waiter
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        return await asyncio.wait_for(waiter, 30.0)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        for _ in range(200):
            if await self.evaluate("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not finish loading")

    async def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element (not element.click())."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()")
        if box is None:
            raise AssertionError(f"nothing matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                            button="left", clickCount=1)

    async def type_into(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def screenshot(self, path: Path, width: int, height: int) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=width < 600)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def headless_chromium(width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    profile = tempfile.mkdtemp(prefix="smppd-chromium-")
    args = [find_chromium(), "--headless", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        browser_ws = None
        seen = b""
        while browser_ws is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 30.0)
            if not line:
                raise AssertionError(f"chromium exited before listening:\n{seen.decode()}")
            seen += line
            found = LISTENING.search(line)
            if found:
                browser_ws = found.group(1).decode()
        drain = asyncio.ensure_future(_drain(proc.stderr))
        http_root = "http://" + browser_ws.split("/")[2]
        async with aiohttp.ClientSession() as http:
            async with http.get(http_root + "/json/list") as resp:
                targets = await resp.json(content_type=None)
            target = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                try:
                    yield page
                finally:
                    page._reader.cancel()
        drain.cancel()
    finally:
        await stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading Chromium's stderr so a full pipe never blocks it."""
    while await stream.readline():
        pass
