"""Schemathesis against a running `signoff serve`: no generated request, valid or
not, gets a 5xx. Requests carry a bearer token so they reach validation and the
store, not just the 401."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import TEST_POLICY, free_port

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")},
        "SIGNOFF_DATABASE_URL": f"sqlite:///{workdir / 'signoff.db'}",
        "SIGNOFF_WEBHOOK_SECRET": "fuzz-secret",
        "SIGNOFF_WEBHOOK_TOKEN": TOKEN,
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
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise AssertionError("signoff serve did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_server_errors(server: str) -> None:
    api = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 6
    seen: list[tuple[str, str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"})
            seen.append((case.method, case.path, response.status_code))
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400 and case.path != "/metrics":
                body = response.json()
                assert {"error", "message"} <= set(body), body

        check()
    statuses = {status for _, _, status in seen}
    assert 201 in statuses or 200 in statuses  # some generated cases got through
    assert 422 in statuses  # and some were refused for what they said
