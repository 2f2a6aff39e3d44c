"""Schemathesis against a real `signoff serve`, reading only its /openapi.json.

Every operation gets valid and invalid generated requests, each signed v2 over the
request target and body exactly as sent (reports get their bearer token); stateful
runs follow the document's links, so `/info` and `/cancel` are reached with the id of
a case just submitted. Any 5xx, any status the document does not list, any body or
content type or header that differs from what it says fails the test: the document
has to tell the truth about the server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot import signing
from tests.conftest import TEST_POLICY, free_port, pg_url_or_skip, reset_postgres

SECRET = "schemathesis-secret"
REPORTS_TOKEN = "schemathesis-reports-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 40  # per operation and mode: about 700 requests in all, well under a minute
SCENARIOS = 30


class SignV2(requests.auth.AuthBase):
    """Signs the prepared request: its method, its target as it goes on the wire, its body."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        target = request.path_url
        if target.startswith("/v1/reports/"):
            request.headers["Authorization"] = f"Bearer {REPORTS_TOKEN}"
            return request
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes)
        assert request.method is not None
        request.headers[signing.HEADER] = signing.sign(
            SECRET, request.method, target, raw, int(time.time())
        )
        return request


def serve(workdir: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")},
        "SIGNOFF_DATABASE_URL": database_url,
        "SIGNOFF_WEBHOOK_SECRET": SECRET,
        "SIGNOFF_REPORTS_TOKEN": REPORTS_TOKEN,
        "SIGNOFF_POLICY": str(TEST_POLICY),
        "SIGNOFF_PORT": str(port),
        "SIGNOFF_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("signoff serve did not start")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'signoff.db'}"
    else:
        url = pg_url_or_skip()
        asyncio.run(reset_postgres(url))
    proc, base = serve(workdir, url)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def load(base: str) -> Any:
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


def test_every_operation_answers_as_documented(server: str) -> None:
    schema = load(server)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    labels = {op.label for op in operations}
    assert len(labels) == 9, labels
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                shorten_wait(case)
                response = case.call(base_url=server, auth=SignV2())
                seen[(case.operation.label, response.status_code)] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # a free-form string (a case id) has no invalid value to generate
                assert mode is GenerationMode.NEGATIVE, operation.label
    statuses = {status for _, status in seen}
    assert {201, 422} <= statuses, seen  # generated cases got in, and some were refused
    assert not {status for status in statuses if status >= 500}, seen


def shorten_wait(case: schemathesis.Case) -> None:
    """A generated long-poll `wait` of more than 0.5 s becomes 0.5 s: a pending case's
    GET holds for as long as `wait` says (up to 60 s, above the requests' timeout), and
    the long-poll itself is tested in test_longpoll.py. Values that are not a number
    from 0 to 60 are sent as generated, so the refusals are still checked."""
    query = case.query or {}
    value = query.get("wait")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    if 0.5 < number <= 60:
        query["wait"] = 0.5


def follow(expression: str, response: requests.Response) -> Any:
    """The value of an OpenAPI link's runtime expression, `$response.body#/<pointer>`."""
    prefix = "$response.body#/"
    assert expression.startswith(prefix), expression
    value = response.json()
    for part in expression.removeprefix(prefix).split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_links_reach_info_and_cancel_with_real_ids(server: str) -> None:
    """Each submitted case's links, as the document states them, lead to the routes that
    take its id: read, answer and withdraw that very case, in that order.

    (Schemathesis' own state machine replays scenarios against a server whose state has
    moved on, which Hypothesis rejects as flaky; here each scenario is self-contained.)"""
    schema = load(server)
    submit = schema["/v1/escalations"]["POST"]
    links = submit.definition.raw["responses"]["201"]["links"]
    assert [link["operationId"] for link in links.values()] == [
        "read_case",
        "answer_info",
        "cancel_case",
    ]
    assert submit.definition.raw["responses"]["200"]["links"] == links
    seen: Counter[tuple[str, int]] = Counter()

    def call(case: schemathesis.Case) -> requests.Response:
        shorten_wait(case)
        response = case.call(base_url=server, auth=SignV2())
        seen[(case.operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)
        return response

    @given(data=st.data())
    @settings(
        max_examples=SCENARIOS,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def scenario(data: st.DataObject) -> None:
        case = data.draw(submit.as_strategy())
        # the source this server signs for, and no key that an earlier scenario used
        case.body["source"] = "default"
        case.body.pop("idempotency_key", None)
        submitted = call(case)
        if submitted.status_code != 201:
            return
        for link in links.values():
            target = schema.find_operation_by_id(link["operationId"])
            parameters = {
                name: follow(value, submitted) for name, value in link["parameters"].items()
            }
            modes = [GenerationMode.POSITIVE]
            if "requestBody" in target.definition.raw:
                modes.append(GenerationMode.NEGATIVE)
            mode = data.draw(st.sampled_from(modes))
            call(data.draw(target.as_strategy(generation_mode=mode, path_parameters=parameters)))

    scenario()
    # real ids: the case is read and withdrawn, and /info finds nobody asked (not a 404)
    assert seen[("GET /v1/escalations/{case_id}", 200)] > 0, seen
    assert seen[("POST /v1/escalations/{case_id}/cancel", 200)] > 0, seen
    assert seen[("POST /v1/escalations/{case_id}/info", 409)] > 0, seen
    assert not [key for key in seen if "{case_id}" in key[0] and key[1] == 404], seen
