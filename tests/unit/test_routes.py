"""The route table (control/routes.py) is the one description of the API: the app
serves its routes, asks for its roles, and the OpenAPI document shows its models and
errors; the control modules import each other without a circle."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from control_helpers import TOKENS, Client, authed_client

from control.auth import IMPLIED
from control.openapi import document
from control.routes import ROUTES, Route

CONTROL = Path(__file__).resolve().parents[2] / "control"


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with authed_client() as served:
        yield served


def _url(route: Route) -> str:
    return re.sub(r"{[^}]+}", "x1", route.path)


def _without(roles: tuple[str, ...]) -> str | None:
    """A configured token that has none of ``roles`` (implied ones counted)."""
    for name, (_, granted) in TOKENS.items():
        held = set().union(*(IMPLIED[role] for role in granted))
        if not held & set(roles):
            return name
    return None


async def test_every_route_asks_for_the_roles_it_declares(client: Client) -> None:
    http, url, view = client
    for route in ROUTES:
        async with http.request(route.method, url + _url(route)) as resp:
            if route.roles:  # /metrics too: metrics_public = false
                assert resp.status == 401, (route.method, route.path)
                assert resp.content_type == "application/problem+json"
            else:
                assert resp.status == 200, (route.method, route.path)
        other = _without(route.roles)
        if route.roles and other is not None:
            headers = {"Authorization": f"Bearer {TOKENS[other][0]}"}
            async with http.request(route.method, url + _url(route), headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 403, (route.method, route.path, other)
                assert all(role in body["detail"] for role in route.roles)
    assert not any(op.paused for op in view.ops.values())  # no handler ran


async def test_a_patch_naming_null_is_refused_naming_the_field(client: Client) -> None:
    http, url, view = client
    admin = {"Authorization": f"Bearer {TOKENS['admin'][0]}"}
    async with http.patch(url + "/v1/operators/mtn", json={"tps": None, "window": 3},
                          headers=admin) as resp:
        body = await resp.json()
        assert resp.status == 422
        assert [e["field"] for e in body["errors"]] == ["tps"]
    assert view.ops["mtn"].window == 10  # nothing changed


def test_the_document_shows_each_routes_models_roles_and_errors() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        where = (route.method, route.path)
        assert op["tags"] == list(route.tags) and op["summary"] == route.summary, where
        responses = op["responses"]
        success = responses[str(route.status)]["content"]
        if isinstance(route.response, str):
            assert route.response in success, where
        else:
            ref = success["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{route.response.__name__}", where
            assert route.response.__name__ in schemas
        if route.request is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{route.request.__name__}", where
        else:
            assert "requestBody" not in op, where
        for status in {414, *route.errors}:
            problem = responses[str(status)]["content"]["application/problem+json"]
            assert problem["schema"]["$ref"] == "#/components/schemas/Problem", where
        assert ("401" in responses and "403" in responses) == bool(route.roles), where
        assert op.get("x-roles", []) == ([] if route.public_by_config else list(route.roles))
        # No error the route does not declare (nor the middleware answers) is shown.
        declared = {route.status, 414, *route.errors, *route.answers}
        if route.roles:
            declared |= {401, 403}
        assert {int(code) for code in responses} == declared, where


def test_every_ref_resolves_to_a_component() -> None:
    doc = document()
    refs = set(re.findall(r"'\$ref': '#/components/schemas/([^']+)'", str(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


def _imports(path: Path) -> set[str]:
    """The control modules a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "control":
                found |= {f"control.{a.name}" for a in node.names}
            elif node.module.startswith("control."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("control.")}
    return found


def test_no_import_circle_among_control_modules() -> None:
    graph = {f"control.{p.stem}": _imports(p) for p in CONTROL.glob("*.py")}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            name = todo.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        return False

    circles = sorted(name for name in graph if reaches(name, name))
    assert circles == []
    # The direction: the app reads the table and the document; the table names the
    # handlers; the handlers know neither.
    assert not reaches("control.handlers", "control.routes")
    assert not reaches("control.routes", "control.openapi")
    assert not reaches("control.openapi", "control.app")


def test_no_control_file_is_over_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in CONTROL.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}
