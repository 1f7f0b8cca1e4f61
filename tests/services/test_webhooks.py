"""Delivery and MO webhooks, end to end: the daemon in-process against the simulator,
POSTing to a real aiohttp receiver in the test. Back-off, poll interval and maximum age
are set small in the config, so retries take milliseconds, not minutes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from e2e_helpers import (
    free_port,
    mno,
    operator,
    running_daemon,
    running_sim,
    wait_bound,
    wait_final,
    wait_for,
    write_config,
)

from correlation.pg_store import PgStore
from correlation.sqlite_store import SqliteStore
from correlation.store import MessageRecord
from smppd.config import ConfigError, load_config
from smppd.runtime.daemon import Daemon
from smppd.webhooks import client as webhook_http
from smppd.webhooks.delivery import Tenants, WebhookSink
from smppd.webhooks.worker import backoff

SECRET = "t1-webhook-secret-0123456789"
T2_SECRET = "t2-webhook-secret-9876543210"
FAST = """
[webhooks]
backoff_min = 0.02
backoff_max = 0.1
poll_interval = 0.05
max_age = {max_age}
"""


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


class Receiver:
    """An HTTP server that records what it is sent; ``failing`` answers 503 that many
    times first; paths under ``redirects`` answer 307 to their target."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.hits: list[Hit] = []
        self.failing = 0
        self.redirects: dict[str, str] = {}
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path in self.redirects:
            raise web.HTTPTemporaryRedirect(self.redirects[request.path])
        if self.failing > 0:
            self.failing -= 1
            return web.Response(status=503)
        self.hits.append(Hit(request.path_qs, dict(request.headers), await request.text()))
        return web.Response(status=204)

    def events(self, kind: str = "dlr") -> list[dict[str, Any]]:
        return [h.event for h in self.hits if h.headers["X-Smppd-Event"] == kind]


@contextlib.asynccontextmanager
async def receiving(port: int = 0, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    receiver = await Receiver(host).start(port)
    try:
        yield receiver
    finally:
        await receiver.stop()


def config(tmp_path: Path, sim: Any, *, max_age: float = 3600.0, extra: str = "") -> Path:
    path = write_config(tmp_path, [operator("op", sim, prefix="9370")])
    with path.open("a") as fh:
        fh.write(FAST.format(max_age=max_age))
        fh.write(f'[[tenants]]\nid = "t1"\nsecret = "{SECRET}"\n' + extra)
    return path


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, *, max_age: float = 3600.0,
                  extra: str = "") -> AsyncIterator[tuple[Any, Daemon]]:
    """The simulator and a daemon bound to it, with webhooks configured (tenant t1)."""
    async with running_sim([mno("op")]) as sim, \
            running_daemon(config(tmp_path, sim, max_age=max_age, extra=extra)) as daemon:
        await wait_bound(daemon)
        yield sim, daemon


def verified(hit: Hit, secret: str = SECRET) -> bool:
    """The receiver's check, as docs/webhooks.md gives it."""
    stamp = hit.headers["X-Smppd-Timestamp"]
    expected = hmac.new(secret.encode(), f"{stamp}.{hit.body}".encode(),
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(hit.headers["X-Smppd-Signature"], f"sha256={expected}")


def message(n: int, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": "t1", "source": "SMPPD", "destination": f"+9370{n:07d}",
            "text": f"hello {n}", **fields}


async def post(daemon: Daemon, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.post(f"http://127.0.0.1:{daemon.api_port}{path}", json=body) as resp:
        return resp.status, await resp.json()


async def get(daemon: Daemon, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{daemon.api_port}{path}") as resp:
        return resp.status, await resp.json()


async def submit(daemon: Daemon, messages: list[dict[str, Any]]) -> list[str]:
    status, body = await post(daemon, "/v1/messages/bulk", {"messages": messages})
    assert status == 202, body
    return [a["message_id"] for a in body["accepted"]]


def failures(daemon: Daemon, reason: str) -> float:
    return daemon.parts.metrics.webhook_failures.labels(reason)._value.get()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- delivery


async def test_receipts_reach_the_receiver_signed_and_in_order(tmp_path: Path) -> None:
    smsc = mno("op")
    smsc.receipts.intermediate = "ENROUTE"  # an intermediate receipt before each final one
    async with running_sim([smsc]) as sim, receiving() as rx:
        async with running_daemon(config(tmp_path, sim)) as daemon:
            await wait_bound(daemon)
            ids = await submit(daemon, [message(n, callback_url=rx.url("/dlr?k=v"))
                                        for n in range(20)])
            await wait_for(lambda: len(rx.hits) == 40, 10, what=lambda: f"{len(rx.hits)} hits")
            _, listed = await get(daemon, "/v1/events?kind=dlr&limit=1000")
        assert all(verified(hit) for hit in rx.hits)
        assert {hit.path for hit in rx.hits} == {"/dlr?k=v"}
        assert {hit.headers["X-Smppd-Event"] for hit in rx.hits} == {"dlr"}
        for message_id in ids:
            mine = [h for h in rx.hits if h.event["message_id"] == message_id]
            assert [(h.event["state"], h.event["final"]) for h in mine] == [
                ("SUBMITTED", False), ("DELIVERED", True)]  # never the final first
            deliveries = [int(h.headers["X-Smppd-Delivery"]) for h in mine]
            assert deliveries == sorted(deliveries)
        # The same JSON as the events the API lists.
        stored = [{k: v for k, v in e.items() if k not in ("id", "kind", "created_at")}
                  for e in listed["events"]]
        assert sorted(map(json.dumps, rx.events())) == sorted(map(json.dumps, stored))
        assert daemon.parts.metrics.webhook_deliveries.labels("delivered")._value.get() == 40


async def test_tenant_default_url_and_mo_routed_by_destination(tmp_path: Path) -> None:
    async with running_sim([mno("op")]) as sim, receiving() as rx:
        t2 = (f'[[tenants]]\nid = "t2"\nsecret = "{T2_SECRET}"\n'
              f'callback_url = "{rx.url("/t2")}"\nmo_destinations = ["2020"]\n')
        async with running_daemon(config(tmp_path, sim, extra=t2)) as daemon:
            await wait_bound(daemon)
            (t2_id,) = await submit(daemon, [message(1, tenant_id="t2")])
            await submit(daemon, [message(2)])  # t1 has no default URL: not sent
            sim.mno("op").inject_mo("93700123456", "3030", "no tenant")
            sim.mno("op").inject_mo("93700123457", "2020", "STOP")

            async def both_mo_stored() -> bool:
                _, found = await get(daemon, "/v1/events?kind=mo")
                return len(found["events"]) == 2
            await wait_for(both_mo_stored, what="two MO events")
            await wait_for(lambda: len(rx.hits) == 2, what="the t2 DLR and MO")
            await wait_final(daemon, [t2_id])
            assert (await daemon.store.webhook_depth()).waiting == 0
        assert all(verified(hit, T2_SECRET) for hit in rx.hits)
        assert {h.path for h in rx.hits} == {"/t2"}
        assert [e["message_id"] for e in rx.events("dlr")] == [t2_id]
        (mo,) = rx.events("mo")
        assert (mo["destination"], mo["text"]) == ("2020", "STOP")


async def test_receiver_down_then_up_gets_everything_after_retries(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    async with gateway(tmp_path) as (_, daemon):
        url = f"http://127.0.0.1:{port}/hook"
        ids = await submit(daemon, [message(n, callback_url=url) for n in range(5)])
        await wait_for(lambda: failures(daemon, "connect") >= 10, what="failed attempts")
        async with receiving(port) as rx:
            rx.failing = 3  # then a few 503s: retried too
            await wait_for(lambda: len(rx.hits) == 5, what=lambda: f"{len(rx.hits)} hits")
        assert failures(daemon, "http_5xx") == 3
        assert daemon.parts.metrics.webhook_deliveries.labels("retried")._value.get() >= 13
    assert sorted(e["message_id"] for e in rx.events()) == sorted(ids)


async def test_a_failed_intermediate_holds_its_final_back(tmp_path: Path) -> None:
    # Each message's intermediate and final are written, and POSTed from memory, close
    # together; the first attempts fail, so the finals wait in the store behind the
    # intermediates' retries. in_flight = 3: most events do not fit in memory at all.
    smsc = mno("op")
    smsc.receipts.intermediate = "ENROUTE"
    async with running_sim([smsc]) as sim, receiving() as rx:
        rx.failing = 6
        path = config(tmp_path, sim, extra="")
        path.write_text(path.read_text().replace("[webhooks]\n", "[webhooks]\nin_flight = 3\n"))
        async with running_daemon(path) as daemon:
            await wait_bound(daemon)
            ids = await submit(daemon, [message(n, callback_url=rx.url()) for n in range(12)])
            await wait_for(lambda: len(rx.hits) == 24, what=lambda: f"{len(rx.hits)} hits")
            await wait_for(lambda: _drained(daemon), what="an empty outbox")
        assert failures(daemon, "http_5xx") == 6
    for message_id in ids:
        mine = [h.event["final"] for h in rx.hits if h.event["message_id"] == message_id]
        assert mine == [False, True], message_id  # never the final first, nothing twice


async def test_a_restart_in_between_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    async with running_sim([mno("op")]) as sim:
        path = config(tmp_path, sim)
        url = f"http://127.0.0.1:{port}/hook"
        async with running_daemon(path) as daemon:
            await wait_bound(daemon)
            ids = await submit(daemon, [message(n, callback_url=url) for n in range(10)])
            await wait_final(daemon, ids)
            await wait_for(lambda: failures(daemon, "connect") >= 10, what="failed attempts")
            assert (await daemon.store.webhook_depth()).waiting == 10
        async with receiving(port) as rx, running_daemon(path) as daemon:  # the file reopened
            await wait_for(lambda: len(rx.hits) == 10, what=lambda: f"{len(rx.hits)} hits")
            await wait_for(lambda: _drained(daemon), what="an empty outbox")
    assert sorted(e["message_id"] for e in rx.events()) == sorted(ids)
    assert all(verified(hit) for hit in rx.hits)


async def _drained(daemon: Daemon) -> bool:
    depth = await daemon.store.webhook_depth()
    return depth.waiting == 0


async def test_max_age_dead_letters_then_replay(tmp_path: Path) -> None:
    port = free_port()
    async with gateway(tmp_path, max_age=0.3) as (_, daemon):
        url = f"http://user:pw@127.0.0.1:{port}/hook?token=abc"
        ids = await submit(daemon, [message(n, callback_url=url) for n in range(3)])

        async def dead() -> list[dict[str, Any]]:
            status, body = await get(daemon, "/v1/webhooks/dead")
            assert status == 200
            return body["dead"] if len(body["dead"]) == 3 else []
        letters = await wait_for(dead, what="three dead letters")
        _, shown = await get(daemon, f"/v1/messages/{ids[0]}")
        assert shown["callback_url"] == f"http://127.0.0.1:{port}/hook?..."
        assert {d["event"]["message_id"] for d in letters} == set(ids)
        for letter in letters:
            assert letter["tenant_id"] == "t1" and letter["kind"] == "dlr"
            assert letter["url"] == f"http://127.0.0.1:{port}/hook?..."  # no credentials
            assert letter["attempts"] >= 2
            assert letter["last_error"].startswith("max age reached; last: connect failed")
        _, t9 = await get(daemon, "/v1/webhooks/dead?tenant_id=t9")
        assert t9 == {"dead": []}
        status, _ = await get(daemon, "/v1/webhooks/dead?limit=0")
        assert status == 400
        assert daemon.parts.metrics.webhook_deliveries.labels("dead")._value.get() == 3
        async with receiving(port) as rx:
            for letter in letters:
                status, body = await post(daemon, f"/v1/webhooks/dead/{letter['id']}/replay")
                assert (status, body) == (200, {"replayed": letter["id"]})
            await wait_for(lambda: len(rx.hits) == 3, what="the replayed deliveries")
            status, _ = await post(daemon, f"/v1/webhooks/dead/{letters[0]['id']}/replay")
            assert status == 404  # delivered: no longer a dead letter
            status, _ = await post(daemon, "/v1/webhooks/dead/abc/replay")
            assert status == 404
            assert (await get(daemon, "/v1/webhooks/dead"))[1] == {"dead": []}
        assert sorted(e["message_id"] for e in rx.events()) == sorted(ids)
        assert {h.path for h in rx.hits} == {"/hook?token=abc"}
        assert {h.headers["Authorization"] for h in rx.hits} == {"Basic dXNlcjpwdw=="}


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
async def test_dead_letters_are_deleted_after_their_retention(tmp_path: Path,
                                                             kind: str) -> None:
    from conftest import FakeClock
    from servers import fresh_database

    from correlation.store import WebhookTargets
    from smppd.metrics import Metrics
    from smppd.webhooks.worker import Deliverer

    clock = FakeClock(1_000_000.0)
    path = config(tmp_path, ["127.0.0.1:2775"])
    path.write_text(path.read_text().replace("[webhooks]\n",
                                             "[webhooks]\ndead_retention = 86400\n"))
    loaded = load_config(path)
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            store: Any = SqliteStore(str(tmp_path / "s.sqlite"), clock=clock)
        else:
            store = PgStore(await stack.enter_async_context(fresh_database()), clock=clock)
        await store.open()
        stack.push_async_callback(store.close)
        await store.accept([MessageRecord(
            message_id=m, tenant_id="t1", source="S", destination="93700000001",
            data_coding=0, body=b"x", created_at=1.0, updated_at=1.0,
            callback_url="http://hooks.example/") for m in ("old", "new")])
        await store.webhook_enqueue("dlr", [{"message_id": "old"}, {"message_id": "new"}],
                                    WebhookTargets())
        old, new = await store.webhook_claim(clock.now, 10, 30)
        await store.webhook_kill(old.id, clock.now - 86_400 - 1, "max age reached")
        await store.webhook_kill(new.id, clock.now - 60, "max age reached")
        metrics = Metrics()
        deliverer = Deliverer(store, lambda: loaded, metrics, clock=clock)
        await deliverer.start()
        stack.push_async_callback(deliverer.stop)

        async def kept() -> list[int]:
            dead = [d["id"] for d in await deliverer.dead(0, 10)]
            return dead if dead == [new.id] else []
        await wait_for(kept, what="the old dead letter deleted")
        await wait_for(lambda: metrics.webhook_dead._value.get() == 1, what="the gauge")
        clock.advance(86_400)  # a day on, the next look: the other is past 24 h too
        deliverer.wake()

        async def none_left() -> bool:
            return await deliverer.dead(0, 10) == []
        await wait_for(none_left, what="the newer dead letter deleted")


async def test_a_redirect_to_another_host_is_not_followed(tmp_path: Path) -> None:
    async with running_sim([mno("op")]) as sim, receiving() as rx, \
            receiving(host="localhost") as elsewhere:
        rx.redirects = {"/same": "/final", "/away": elsewhere.url("/stolen")}
        async with running_daemon(config(tmp_path, sim, max_age=0.3)) as daemon:
            await wait_bound(daemon)
            same, away = await submit(daemon, [message(1, callback_url=rx.url("/same")),
                                               message(2, callback_url=rx.url("/away"))])

            async def dead() -> list[dict[str, Any]]:
                return (await get(daemon, "/v1/webhooks/dead"))[1]["dead"]
            (letter,) = await wait_for(dead, what="the redirected delivery dead")
            await wait_for(lambda: len(rx.hits) == 1, what="the same-host redirect followed")
        assert letter["event"]["message_id"] == away
        assert "redirect to another host, not followed" in letter["last_error"]
        assert elsewhere.hits == []
        (hit,) = rx.hits
        assert (hit.path, hit.event["message_id"]) == ("/final", same) and verified(hit)
        assert failures(daemon, "redirect") >= 1


async def test_postgresql_store_outbox_end_to_end(tmp_path: Path) -> None:
    from servers import fresh_database

    async with fresh_database() as dsn, running_sim([mno("op")]) as sim, receiving() as rx:
        path = config(tmp_path, sim)
        rx.failing = 10**9  # the receiver answers 503 while the first daemon runs
        first = Daemon(load_config(path), store=PgStore(dsn))
        await first.start()
        try:
            await wait_bound(first)
            ids = await submit(first, [message(n, callback_url=rx.url()) for n in range(5)])
            await wait_final(first, ids)
            await wait_for(lambda: failures(first, "http_5xx") >= 5, what="503s")
        finally:
            await first.stop()
        rx.failing = 0
        second = Daemon(load_config(path), store=PgStore(dsn))  # finds the outbox as left
        await second.start()
        try:
            await wait_bound(second)
            ids += await submit(second, [message(n, callback_url=rx.url())
                                         for n in range(5, 10)])
            await wait_for(lambda: len(rx.hits) == 10, what=lambda: f"{len(rx.hits)} hits")
        finally:
            await second.stop()
    assert sorted(e["message_id"] for e in rx.events()) == sorted(ids)
    assert all(verified(hit) for hit in rx.hits)


class Published:
    """The NATS sink's place: records what was published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        self.events.append((kind, event))

    async def publish_many(self, kind: str, events: Any) -> None:
        self.events.extend((kind, e) for e in events)


async def test_over_another_sink_the_outbox_is_written_after_the_publish(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"])])
    with path.open("a") as fh:
        fh.write(f'[[tenants]]\nid = "t1"\nsecret = "{SECRET}"\nmo_destinations = ["2020"]\n')
    loaded = load_config(path)
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    await store.open()
    try:
        await store.accept([MessageRecord(
            message_id=m, tenant_id="t1", source="S", destination="93700000001",
            data_coding=0, body=b"x", created_at=1.0, updated_at=1.0,
            callback_url="http://hooks.example/" if m == "m1" else None) for m in ("m1", "m2")])
        inner, woken = Published(), []  # type: ignore[var-annotated]
        sink = WebhookSink(inner, store, Tenants(lambda: loaded), combined=False,
                           on_queued=woken.append)
        await sink.publish("dlr", {"message_id": "m1", "state": "DELIVERED"})
        await sink.publish("dlr", {"message_id": "m2", "state": "DELIVERED"})  # no URL
        await sink.publish_many("mo", [{"destination": "2020"}, {"destination": "3030"}])
        assert [k for k, _ in inner.events] == ["dlr", "dlr", "mo", "mo"]
        assert await store.list_events() == []  # the other sink has them, not the store
        claimed = await store.webhook_claim(2e9, 10, 30)
        assert [(r.kind, r.tenant_id, r.url) for r in claimed] == [
            ("dlr", "t1", "http://hooks.example/"), ("mo", "t1", None)]
        assert [q.rows for q in woken] == [1, 1]  # m1's DLR and the MO (m2 has no URL)
    finally:
        await store.close()


# --------------------------------------------------------------------------- refusals


async def test_a_bad_callback_url_is_refused_at_submit(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (_, daemon):
        port = daemon.api_port
        bad = ["ftp://example.com/x", "http://", "hooks.example/x", "http://h/a b",
               "https://hooks.example/#frag", "http://h:99999/", "x" * 3000,
               f"http://127.0.0.1:{port}/v1/messages", f"http://localhost:{port}/",
               f"http://[::1]:{port}/", f"http://0.0.0.0:{port}/"]
        for n, url in enumerate(bad):
            status, body = await post(daemon, "/v1/messages",
                                      message(n, message_id=f"bad-{n}", callback_url=url))
            assert status == 422, url
            assert [e["field"] for e in body["errors"]] == ["callback_url"], url
            assert (await get(daemon, f"/v1/messages/bad-{n}"))[0] == 404
        status, body = await post(daemon, "/v1/messages", message(
            1, tenant_id="t9", callback_url="https://hooks.example/"))
        assert status == 422 and "no [[tenants]] entry" in body["errors"][0]["message"]
        status, body = await post(daemon, "/v1/messages/bulk", {"messages": [
            message(1), message(2, callback_url=f"http://localhost:{port}/")]})
        assert status == 422
        assert [e["field"] for e in body["errors"]] == ["messages[1].callback_url"]
        # Another port on this host is another service: accepted.
        status, _ = await post(daemon, "/v1/messages", message(
            3, callback_url=f"http://127.0.0.1:{free_port()}/"))
        assert status == 202


@pytest.mark.parametrize(("extra", "key", "text"), [
    ('[[tenants]]\nid = "a"\n', "tenants[0]", "exactly one of secret, secret_env"),
    ('[[tenants]]\nid = "a"\nsecret = "short"\n', "tenants[0].secret", "at least 16"),
    ('[[tenants]]\nid = "a"\nsecret_env = "NOT_SET_ANYWHERE"\n', "tenants[0].secret_env",
     "NOT_SET_ANYWHERE is not set"),
    (f'[[tenants]]\nid = "a"\nsecret = "{SECRET}"\ncallback_url = "ftp://x/"\n',
     "tenants[0].callback_url", "http:// or https://"),
    (f'[[tenants]]\nid = "a"\nsecret = "{SECRET}"\nmo_destinations = ["2020"]\n'
     f'[[tenants]]\nid = "b"\nsecret = "{SECRET}"\nmo_destinations = ["+2020"]\n',
     "tenants[1].mo_destinations", "also a destination of tenant a"),
    ("[webhooks]\nbackoff_min = 5\nbackoff_max = 1\n", "webhooks.backoff_max", "at least"),
    ('[webhooks]\ntls_ca = "/nonexistent/ca.pem"\n', "webhooks.tls_ca", "file not found"),
    ('[webhooks]\ntls_ca = "/etc/hostname"\n', "webhooks.tls_ca", "not a PEM CA certificate"),
])
def test_bad_webhook_config_names_the_key(tmp_path: Path, extra: str, key: str,
                                          text: str) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"])])
    with path.open("a") as fh:
        fh.write(extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert any(k.startswith(key) and text in m for k, m in caught.value.problems), \
        caught.value.problems
    assert SECRET not in str(caught.value)


def test_secret_from_the_environment_never_shown(tmp_path: Path) -> None:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:2775"])])
    with path.open("a") as fh:
        fh.write('[[tenants]]\nid = "a"\nsecret_env = "A_HOOK_SECRET"\n')
    loaded = load_config(path, env={"A_HOOK_SECRET": SECRET})
    tenant = loaded.tenant("a")
    assert tenant is not None and tenant.secret_value() == SECRET
    assert SECRET not in repr(loaded) and SECRET not in loaded.model_dump_json()


# --------------------------------------------------------------------------- pure parts


def test_signature_and_headers() -> None:
    # echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'k'
    assert webhook_http.signature("k", "1700000000", '{"a":1}') == (
        "sha256=" + hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest())
    headers = webhook_http.headers("k", "1700000000", "{}", "mo", 42)
    assert headers["X-Smppd-Delivery"] == "42" and headers["X-Smppd-Event"] == "mo"
    assert headers["X-Smppd-Timestamp"] == "1700000000"


def test_what_counts_as_the_api_itself() -> None:
    assert webhook_http.points_at("http://127.0.0.1:8080/x", "127.0.0.1", 8080)
    assert webhook_http.points_at("http://127.1.2.3:8080/", "0.0.0.0", 8080)
    assert webhook_http.points_at("http://api.internal:8080/", "api.internal", 8080)
    assert webhook_http.points_at("http://[::ffff:127.0.0.1]:8080/", "::", 8080)
    assert webhook_http.points_at("http://app.localhost/", "127.0.0.1", 80)
    assert not webhook_http.points_at("http://127.0.0.1:8081/", "127.0.0.1", 8080)
    assert not webhook_http.points_at("https://hooks.example:8080/", "127.0.0.1", 8080)


def test_redirect_hosts_and_redaction() -> None:
    assert webhook_http.same_host("http://a:80/x", "http://A/y")
    assert webhook_http.same_host("http://a/x", "https://a/y")  # upgrade on the same host
    assert not webhook_http.same_host("https://a/x", "http://a/y")
    assert not webhook_http.same_host("http://a/x", "http://b/y")
    assert not webhook_http.same_host("http://a:80/x", "http://a:81/y")
    assert webhook_http.redacted("https://u:p@h.example:8443/p?token=1") == (
        "https://h.example:8443/p?...")


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    assert [backoff(n, 1.0, 10.0, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [
        1.0, 2.0, 4.0, 8.0, 10.0]
    assert [backoff(n, 1.0, 10.0, lambda: 0.0) for n in (1, 2, 5, 500)] == [
        0.5, 1.0, 5.0, 5.0]
