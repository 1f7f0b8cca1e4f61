"""The OpenAPI document covers every route, and the live app conforms to it
(schemathesis against the app served from a thread, with an admin token)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from control_helpers import FakeView, authenticator, serve_in_thread
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import allow_header_conformance

from control.app import create_app
from control.openapi import document

ADMIN = {"Authorization": "Bearer admin-token"}

schema = schemathesis.openapi.from_dict(document())


def test_document_is_openapi_31_and_covers_every_route() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    app = create_app(None)  # type: ignore[arg-type]  # routes only; no request is served
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes - documented == set(), "undocumented routes"
    assert documented - routes == set(), "documented routes the app does not serve"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            assert ("security" in op) == (path not in (
                "/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/", "/status",
                "/status/status.css", "/status/status.js")), path


def test_document_is_valid_openapi_31() -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    validate(document(), cls=OpenAPIV31SpecValidator)


def test_served_document_matches() -> None:
    import json
    import urllib.request

    with serve_in_thread(authenticator()) as (url, _), \
            urllib.request.urlopen(url + "/v1/openapi.json") as resp:
        assert json.loads(resp.read()) == document()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, FakeView]]:
    with serve_in_thread(authenticator()) as served:
        yield served


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any, live: tuple[str, FakeView]) -> None:
    url, _ = live
    excluded: list[Any] = []
    if case.path == "/v1/messages/bulk":
        # "bulk" is also a {id} of GET /v1/messages/{id}: Allow rightly lists GET there
        excluded.append(allow_header_conformance)
        # more than 1000 messages is refused with 413, which schemathesis does not count
        # as a rejection
        excluded.append(schemathesis.checks.negative_data_rejection)
    if case.method == "GET":
        # unknown query parameters are ignored, as HTTP APIs do; schemathesis counts them
        # as invalid input that should have been refused
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(base_url=url, headers=ADMIN, timeout=10, excluded_checks=excluded)
