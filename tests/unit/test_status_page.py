"""The status page in a real browser (headless Chromium over the DevTools protocol)
against a daemon and simulated MNOs: it asks for a token, renders every operator and
bind, its rates move while messages flow, and its pause button pauses the operator.

SMPPD_UPDATE_SCREENSHOT=1 also writes the screenshot to docs/status-page.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e
from browser import Page, headless_chromium

from smppd.runtime.daemon import Daemon

DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKENS = {"watcher": ("read-token", ["read"]), "oncall": ("operate-token", ["operate"])}


def _auth_toml() -> str:
    lines = []
    for name, (secret, roles) in TOKENS.items():
        lines += ["[[auth.tokens]]", f'name = "{name}"',
                  f'sha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"',
                  f"roles = {json.dumps(roles)}"]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[Daemon]:
    from e2e_helpers import write_config

    async with e2e.running_sim([e2e.mno("alpha", tps=1000), e2e.mno("beta", tps=1000)]) as sim:
        # gamma's SMSC is down: its bind keeps failing and says so
        path = write_config(tmp_path, [e2e.operator("alpha", sim, prefix="937", tps=50),
                                       e2e.operator("beta", sim, prefix="938", tps=20,
                                                    binds=2),
                                       e2e.operator("gamma", [f"127.0.0.1:{e2e.free_port()}"],
                                                    prefix="939", tps=30)])
        path.write_text(path.read_text() + _auth_toml())
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_for(lambda: all(daemon.operators[op].bound_count == want for op, want
                                           in (("alpha", 1), ("beta", 2))), 10, what="binds up")
            await e2e.wait_for(lambda: daemon.operators["gamma"].binds[0].last_error, 10,
                               what="gamma's bind failing")
            yield daemon


async def text(page: Page, selector: str) -> str | None:
    found = await page.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent")
    return found if isinstance(found, str) else None


async def use_token(page: Page, token: str) -> None:
    if await page.evaluate("document.getElementById('token-form').hidden"):
        await page.click("#token-button")
    await page.type_into("#token", token)
    await page.click("#token-form button[type=submit]")


async def test_status_page_renders_rates_and_pauses(tmp_path: Path) -> None:
    async with gateway(tmp_path) as daemon, headless_chromium() as page:
        url = f"http://127.0.0.1:{daemon.api_port}"
        await page.goto(url + "/")
        assert await page.evaluate("document.title") == "smppd status"

        # Tokens are configured: the page asks for one and shows nothing without it.
        await e2e.wait_for(lambda: page.evaluate(
            "!document.getElementById('token-form').hidden"), 10, what="token form")
        assert await text(page, "#conn") == "token needed"
        assert await page.evaluate("document.querySelectorAll('[data-operator]').length") == 0

        # A read token: operators and binds render, without the operator actions.
        await use_token(page, "read-token")
        await e2e.wait_for(lambda: page.evaluate(
            "document.querySelectorAll('[data-operator]').length === 3"), 10,
            what="three operator cards")
        assert await page.evaluate("sessionStorage.getItem('smppd.token')") == "read-token"
        assert "read-token" not in await page.evaluate("location.href")
        for op_id, binds in (("alpha", 1), ("beta", 2)):
            card = f"[data-operator={op_id}]"
            assert await text(page, f"{card} .op-state") == "bound"
            assert await page.evaluate(
                f"document.querySelectorAll('{card} tr[data-bind]').length") == binds
            host = await text(page, f"{card} tr[data-bind] td:nth-child(3)")
            assert host is not None and host.endswith("(primary)")
        assert await text(page, "[data-operator=beta] [data-figure=tps]") == "20"
        assert await text(page, "#tps-limit") == "100"
        # gamma: unbound, its bind's error and since when, and the error in the list
        assert await text(page, "[data-operator=gamma] .op-state") == "unbound"
        error = await text(page, "[data-operator=gamma] tr[data-bind] td.error")
        assert error is not None and "ConnectionRefusedError" in error and "since 20" in error
        assert "gamma#0" in (await text(page, "#errors") or "")
        assert await page.evaluate("document.querySelector('[data-operator=alpha] .actions')"
                                   ".hidden") is True
        assert await text(page, "#submit-rate") == "0"

        # Messages flow: the submit and receipt rates on the page rise above zero.
        async def flow() -> None:
            while True:
                await e2e.submit(daemon, 10, prefix="9370")
                await asyncio.sleep(0.2)

        sender = asyncio.ensure_future(flow())
        try:
            await e2e.wait_for(lambda: _above_zero(page, "[data-operator=alpha] "
                                                     "[data-figure=submit]"),
                               20, interval=0.2, what="alpha's submit rate above 0")
            await e2e.wait_for(lambda: _above_zero(page, "#receipt-rate"), 20, interval=0.2,
                               what="the receipt rate above 0")
            assert await _above_zero(page, "#submit-rate")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

        # An operate token: the buttons appear; clicking pause pauses the operator.
        await use_token(page, "operate-token")
        await e2e.wait_for(lambda: page.evaluate(
            "!document.querySelector('[data-operator=beta] [data-action=pause]').disabled"),
            10, what="an enabled pause button")
        await page.click("[data-operator=beta] [data-action=pause]")
        await e2e.wait_for(lambda: _equals(page, "[data-operator=beta] .op-state", "paused"), 10,
                           what="beta shown paused")
        assert daemon.operators["beta"].pause_gate.shut
        assert not daemon.operators["alpha"].pause_gate.shut
        async with aiohttp.ClientSession() as http, http.get(
                url + "/v1/operators/beta",
                headers={"Authorization": "Bearer read-token"}) as resp:
            assert (await resp.json())["state"] == "paused"
        await e2e.wait_for(lambda: page.evaluate(
            "!document.querySelector('[data-operator=beta] [data-action=resume]').disabled"),
            10, what="an enabled resume button")

        shot = tmp_path / "status-page.png"
        await page.screenshot(shot, 1280, 1000)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("SMPPD_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, DOCS / "status-page.png")

        # Readable on a phone: nothing wider than the screen at 390 px.
        await page.screenshot(tmp_path / "phone.png", 390, 844)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390

        await page.click("[data-operator=beta] [data-action=resume]")
        await e2e.wait_for(lambda: _equals(page, "[data-operator=beta] .op-state", "bound"), 10,
                           what="beta shown bound again")
        assert not daemon.operators["beta"].pause_gate.shut


async def _above_zero(page: Page, selector: str) -> bool:
    value = await text(page, selector)
    try:
        return value is not None and float(value.replace(",", "")) > 0
    except ValueError:
        return False


async def _equals(page: Page, selector: str, expected: str) -> bool:
    return await text(page, selector) == expected


async def test_status_page_and_assets_are_served_without_a_token(tmp_path: Path) -> None:
    async with gateway(tmp_path) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.api_port}"
        for path, kind in (("/", "text/html"), ("/status", "text/html"),
                           ("/status/status.css", "text/css"),
                           ("/status/status.js", "text/javascript")):
            async with http.get(url + path) as resp:
                assert resp.status == 200, path
                assert resp.content_type == kind
                assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
                body = await resp.text()
                assert "http://" not in body and "https://" not in body  # nothing fetched off-box
        async with http.get(url + "/v1/status") as resp:
            assert resp.status == 401
        async with http.get(url + "/v1/status",
                            headers={"Authorization": "Bearer read-token"}) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200
        assert [op["id"] for op in body["operators"]] == ["alpha", "beta", "gamma"]
        assert body["you"] == {"name": "watcher", "operate": False}
        assert body["totals"]["tps_limit"] == 100
        assert body["operators"][1]["binds"][0]["last_error_since"] is None
        gamma = body["operators"][2]
        assert gamma["state"] == "unbound"
        assert "ConnectionRefusedError" in gamma["binds"][0]["last_error"]
        assert isinstance(gamma["binds"][0]["last_error_since"], float)
        failing = [e for e in body["errors"] if e["event"] == "bind_failing"]
        assert [(e["level"], e["operator"], e["bind"]) for e in failing] == [
            ("WARNING", "gamma", "gamma#0")]
        assert "ConnectionRefusedError" in failing[0]["message"]
        async with http.get(url + "/v1/status",
                            headers={"Authorization": "Bearer operate-token"}) as resp:
            assert (await resp.json())["you"] == {"name": "oncall", "operate": True}


def test_an_open_api_offers_the_actions_to_anyone() -> None:
    import urllib.request

    from control_helpers import serve_in_thread

    with serve_in_thread(None) as (url, _), urllib.request.urlopen(url + "/v1/status") as resp:
        body = json.loads(resp.read())
    assert body["you"] == {"name": None, "operate": True}
    assert len(body["operators"]) == 5
