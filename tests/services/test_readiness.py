"""/readyz names every dependency the mode uses (issue 13, item 12), and is 503 while
one the message path needs (the store, NATS) does not answer: SQLite, PostgreSQL and
NATS behind a proxy that is cut, Redis on a port nothing listens on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api_fixtures import Api, serving
from cut_proxy import cut_link, dsn_via
from e2e_helpers import free_port, nats_names, wait_for
from servers import NATS_URL, delete_streams

from correlation.pg_store import PgStore


async def _ready(api: Api) -> tuple[int, dict[str, Any]]:
    status, body, _ = await api.call("GET", "/readyz")
    return status, body


async def _until(api: Api, status: int, **fields: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        got, body = await _ready(api)
        return body if got == status and all(body.get(k) == v for k, v in fields.items()) \
            else None

    found: dict[str, Any] = await wait_for(reached, what=f"/readyz {status} {fields}")
    return found


async def test_embedded_store_down_is_503(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        status, body = await _ready(api)
        assert status == 200 and body["store"] == "ok" and body["required"] == ["store"]
        assert not {"redis", "nats", "vault"} & set(body)  # not used in this mode
        await api.daemon.store.close()  # the store answers nothing any more
        status, body = await _ready(api)
        assert status == 503 and body["ready"] is False and body["store"] == "unreachable"


async def test_postgresql_cut_is_503_and_back(tmp_path: Path, pg_dsn: str) -> None:
    async with cut_link(pg_dsn, 5432) as proxy:
        store = PgStore(dsn_via(pg_dsn, proxy.port), migrate_on_open=False)
        async with serving(tmp_path, store=store) as api:
            assert (await _ready(api))[0] == 200
            await proxy.cut()
            body = await _until(api, 503, store="unreachable")
            assert body["ready"] is False
            await proxy.restore()
            await _until(api, 200, store="ok")


async def test_redis_away_is_reported_not_required(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with serving(tmp_path, redis={"url": dead}) as api:
        status, body = await _ready(api)
        assert body["redis"] in ("unreachable", "timeout") and body["store"] == "ok"
        assert "redis" not in body["required"]
        assert status == 200, "without Redis each replica paces at its share: still ready"


async def test_nats_cut_is_503_and_back(tmp_path: Path) -> None:
    names = nats_names()
    try:
        async with cut_link(NATS_URL, 4222) as proxy:
            nats = {"url": f"nats://127.0.0.1:{proxy.port}", **names}
            async with serving(tmp_path, nats=nats) as api:
                status, body = await _ready(api)
                assert status == 200 and body["nats"] == "ok" and "nats" in body["required"]
                await proxy.cut()
                await _until(api, 503, nats="unreachable")
                await proxy.restore()
                await _until(api, 200, nats="ok")
    finally:
        await delete_streams(names)
