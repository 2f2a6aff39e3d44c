"""A real `signoff serve` for the client's tests, and what stands around it: a web
reviewer who decides cases in the inbox, a receiver for callbacks, and a proxy that
fails the first request in a chosen way."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SECRET = "client-tests-secret-0123456789"
POLICY = Path(__file__).with_name("policy.yaml")
REVIEWER = "alice@example.com"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# the server, imported from the interpreter running the tests (the repository's venv)
SERVE = "from bot.cli import main; main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    env: dict[str, str]
    workdir: Path
    log: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", SERVE, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@contextlib.contextmanager
def serving(workdir: Path) -> Iterator[Server]:
    """`signoff serve` on 127.0.0.1 and a free port, with SQLite in `workdir`."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")},
        "SIGNOFF_DATABASE_URL": f"sqlite:///{workdir / 'signoff.db'}",
        "SIGNOFF_WEBHOOK_SECRET": SECRET,
        "SIGNOFF_POLICY": str(POLICY),
        "SIGNOFF_HOST": "127.0.0.1",
        "SIGNOFF_PORT": str(port),
        "SIGNOFF_CALLBACK_HOSTS": '["127.0.0.1"]',
        "SIGNOFF_OUTBOX_POLL_INTERVAL": "0.2",
        "SIGNOFF_LOG_LEVEL": "WARNING",
    }
    log = workdir / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, "serve"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"signoff serve exited {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"signoff serve did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(url, env, workdir, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Reviewer:
    """A person signed in to the web inbox, deciding with its form (CSRF and all)."""

    def __init__(self, server: Server, email: str = REVIEWER) -> None:
        made = server.cli("web", "login-link", email)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().rsplit("token=", 1)[1]
        self.http = httpx.Client(base_url=server.url, timeout=30)
        signed = self.http.post("/inbox/login", data={"token": token})
        assert signed.status_code == 303, signed.text

    def close(self) -> None:
        self.http.close()

    def decide(
        self,
        case_id: str,
        action: str,
        reason_code: str = "safe_action",
        reason: str = "",
        args: dict[str, str] | None = None,
    ) -> httpx.Response:
        page = self.http.get(f"/inbox/cases/{case_id}")
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found is not None, "the case page has no form"
        form = {
            "csrf": found.group(1),
            "action": action,
            "reason_code": reason_code,
            "reason": reason,
            **{f"args.{k}": v for k, v in (args or {}).items()},
        }
        answer = self.http.post(f"/inbox/cases/{case_id}", data=form)
        assert answer.status_code == 303, answer.text
        return answer

    def decide_later(
        self, case_id: str, delay: float, action: str, **form: Any
    ) -> threading.Thread:
        def run() -> None:
            time.sleep(delay)
            self.decide(case_id, action, **form)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """What a little HTTP server on 127.0.0.1 received, and its URL."""

    url: str = ""
    seen: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.seen)} requests arrived, not {count}")
            self.arrived.wait(0.1)
            self.arrived.clear()
        return self.seen


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@contextlib.contextmanager
def receiver() -> Iterator[Recorder]:
    """A workflow's callback endpoint: records each POST and answers 204."""
    record = Recorder()

    class Handler(_Quiet):
        def do_POST(self) -> None:
            got = Received("POST", self.path, dict(self.headers.items()), self.body())
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            record.seen.append(got)
            record.arrived.set()

    with _serve(Handler) as url:
        record.url = url
        yield record


@contextlib.contextmanager
def proxy(upstream: str, first: str) -> Iterator[Recorder]:
    """Forwards to `upstream`, except the first request: `first` is `503` (answered so,
    not forwarded), `drop` (the connection closed unanswered, not forwarded), `lost`
    (forwarded, then the connection closed: the answer is lost) or `none` (forwarded)."""
    record = Recorder()
    lock = threading.Lock()

    class Handler(_Quiet):
        def handle_one(self, method: str) -> None:
            body = self.body()
            got = Received(method, self.path, dict(self.headers.items()), body)
            with lock:
                record.seen.append(got)
                nth = len(record.seen)
            record.arrived.set()
            if nth == 1 and first == "503":
                payload = b'{"error": "unavailable", "message": "try again"}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if nth == 1 and first == "drop":
                self.close_connection = True
                return
            skip = {"host", "content-length", "connection", "accept-encoding"}
            headers = {k: v for k, v in got.headers.items() if k.lower() not in skip}
            answer = httpx.request(
                method, upstream + self.path, headers=headers, content=body, timeout=90
            )
            if nth == 1 and first == "lost":
                self.close_connection = True
                return
            self.send_response(answer.status_code)
            for key in ("Content-Type", "Location"):
                if key in answer.headers:
                    self.send_header(key, answer.headers[key])
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def do_GET(self) -> None:
            self.handle_one("GET")

        def do_POST(self) -> None:
            self.handle_one("POST")

    with _serve(Handler) as url:
        record.url = url
        yield record


def a_case(**extra: Any) -> dict[str, Any]:
    """A case the test policy sends to the review lane (confidence under 0.90)."""
    return {
        "kind": "tool_call",
        "title": "Send the quarterly report to the customer",
        "question": "May the agent send it?",
        "recommendation": {"action": "approve", "confidence": 0.8, "rationale": "looks fine"},
        "requested_by": "agent@example.com",
        **extra,
    }
