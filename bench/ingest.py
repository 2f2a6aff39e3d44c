"""Intake benchmark: how many durable cases per second a real `signoff serve` accepts.

Starts `signoff serve` as a subprocess in a fresh temporary directory (a fresh
database for every run), drives `POST /v1/escalations` with real, signed, varied
cases from a small raw asyncio HTTP/1.1 keep-alive client (cheap on CPU, since it
shares the machine with the server), and prints throughput and latency for two
load shapes:

* closed loop: N clients (default 50), each sending its next case as soon as it has
  the answer to the last one, for a fixed duration after an uncounted warm-up;
* open loop: a steady rate (default 200 cases/s) sent at fixed times whatever the
  answers; latency is measured from each request's scheduled send time, so a
  stalled server is charged for the requests it delayed (no coordinated omission).

After each run the `cases` table is counted directly in the database and compared
with the number of 201 answers (warm-up included): a 201 means the case is durable.

Columns: cases/s is 201 answers in the measured window over its length (up to the
last answer); errors counts non-201 answers and transport failures; cpu is cores
used by the server process (all threads) and by this client; for the open loop,
lag-p99 is how late this client itself sent (a check on the client, already inside
the latencies), in-flight the most requests outstanding at once, conns the
connections the pool opened.

    .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --postgres-url postgresql://u:p@127.0.0.1/db --json

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import random
import secrets
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HOST = "127.0.0.1"
PATH = "/v1/escalations"
SIGNATURE_HEADER = "X-Signoff-Signature"
POOL = 4096  # distinct pre-built cases, cycled; each request is signed as it is sent
START_TIMEOUT = 60.0  # seconds for the server to answer /healthz
GRACE = 30.0  # seconds to wait for outstanding answers after a run
STOP_TIMEOUT = 30.0  # seconds for the server to exit after SIGINT
MAX_REQUESTS_PER_CLIENT = 10_000_000  # a bound on every client loop
MAX_CONNECTIONS = 2000  # open loop: beyond this many, a request waits for a free connection
PG_ENV = "SIGNOFF_BENCH_POSTGRES_URL"
SERVER_WORKERS = [1]  # `signoff serve --workers`, set from the command line
DEFAULT_POSTGRES_HINT = "postgresql://signoff:signoff@127.0.0.1:5432/signoff_bench"


# --------------------------------------------------------------------------- cases


KINDS = ("expense_approval", "refund", "content_moderation", "agent_tool_call", "access_request")
KIND_WEIGHTS = (30, 30, 15, 15, 10)
PEOPLE = ("Dana Whitfield", "Sam Okafor", "Lee Chen", "Ana Souza", "Jo Meyer", "Ravi Iyer")
STOP_FLAGS = ("hallucination_suspected", "data_leakage", "contradictory_evidence")


def make_case(rng: random.Random, n: int) -> dict[str, Any]:
    """One realistic case; the mix reaches every lane of the shipped policy."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    # Model confidences lean high: most cases are routine, some are shaky.
    confidence = round(0.5 + 0.49 * rng.betavariate(3.0, 1.3), 3)
    runner_up = round(max(0.0, 1.0 - confidence - rng.uniform(0, 0.05)), 3)
    person = rng.choice(PEOPLE)
    level = rng.choices(("low", "medium", "high", "critical"), (55, 30, 12, 3))[0]
    amount = round(10 ** rng.uniform(1, 4.5), 2)  # 10 .. ~31,600
    currency = rng.choice(("EUR", "USD", "GBP"))
    flags: list[str] = []
    if rng.random() < 0.04:
        flags.append(rng.choice(STOP_FLAGS))
    if rng.random() < 0.15:
        flags.append("pii_detected")
    risk: dict[str, Any] = {"level": level, "reversible": rng.random() > 0.1}
    facts: dict[str, Any]
    if kind == "expense_approval":
        title = f"Expense report ER-{n}: {currency} {amount:,.2f}"
        question = "Approve this expense report?"
        risk.update(amount=amount, currency=currency)
        facts = {
            "employee": person,
            "cost_center": f"ENG-{rng.randint(1, 99):03d}",
            "line_items": rng.randint(1, 40),
        }
    elif kind == "refund":
        title = f"Refund {currency} {amount:,.2f} to order #A-{n}"
        question = "Approve a refund for this order?"
        risk.update(amount=amount, currency=currency, customer_tier=rng.choice(("std", "gold")))
        facts = {
            "order": f"A-{n}",
            "prior_refunds": rng.randint(0, 3),
            "carrier_delay_days": rng.randint(0, 12),
        }
    elif kind == "content_moderation":
        title = f"Remove forum post #{n} for harassment?"
        question = "Remove this post and warn the author?"
        facts = {"post": str(n), "author_strikes": rng.randint(0, 3), "reports": rng.randint(1, 9)}
    elif kind == "agent_tool_call":
        recipients = rng.randint(1, 5000)
        title = f"Agent wants to email {recipients} customers"
        question = "Let the support agent send this email?"
        facts = {
            "tool": "send_email",
            "recipient": f"list-{n}@lists.example.com",
            "recipients": recipients,
        }
    else:
        title = f"Grant {person} read access to billing-db-{n % 7}"
        question = "Grant this access for 7 days?"
        facts = {"requester": person, "resource": f"billing-db-{n % 7}", "days": 7}
    case: dict[str, Any] = {
        "kind": kind,
        "title": title,
        "question": question,
        "summary": f"Case {n} raised by an automated workflow for {person}. "
        "The model's rationale and the evidence are linked below.",
        "recommendation": {
            "action": rng.choices(("approve", "reject"), (80, 20))[0],
            "confidence": confidence,
            "rationale": "Matches the policy and prior decisions for similar cases.",
            "alternatives": [{"action": "reject", "confidence": runner_up}],
        },
        "risk": risk,
        "facts": facts,
        "evidence": [{"label": f"Record {n}", "url": f"https://records.example.com/{kind}/{n}"}],
        "requested_by": f"{person.split()[0].lower()}@example.com",
    }
    if flags:
        case["flags"] = flags
    if rng.random() < 0.2:
        case["sla"] = rng.choice(("15m", "1h", "8h"))
    return case


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v2=<hex HMAC-SHA256(secret, "<t>.POST./v1/escalations." + body)>`, as
    bot/signing.py makes it for a submit."""
    message = b"%d.POST./v1/escalations." % timestamp + body
    return f"t={timestamp},v2={hmac.new(secret, message, hashlib.sha256).hexdigest()}"


class Cases:
    """A ring of pre-built requests, each signed as it is sent.

    The server answers a request whose signature it has already accepted with the
    first answer (a replay, no new case), so a body sent again must be signed again
    with another timestamp: each slot remembers its last one and goes past it."""

    def __init__(self, secret: str, port: int, seed: int, keyed: float, size: int = POOL) -> None:
        self._secret = secret.encode()
        self._keyed = keyed
        self._tag = secrets.token_hex(4).encode()
        rng = random.Random(seed)
        self._bodies = [orjson.dumps(make_case(rng, 10_000 + i)) for i in range(size)]
        self._with_key = [rng.random() < keyed for _ in range(size)]
        host = f"{HOST}:{port}".encode()
        self._heads = [
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s: "
            % (PATH.encode(), host, len(body), SIGNATURE_HEADER.encode())
            for body in self._bodies
        ]
        self._stamps = [0] * size
        self._next = 0

    def next(self) -> bytes:
        i = self._next
        self._next += 1
        slot = i % len(self._bodies)
        stamp = self._stamps[slot] = max(int(time.time()), self._stamps[slot] + 1)
        body = self._bodies[slot]
        signature = sign(self._secret, body, stamp).encode()
        key = b"Idempotency-Key: bench-%s-%d\r\n" % (self._tag, i) if self._with_key[slot] else b""
        return self._heads[slot] + signature + b"\r\n" + key + b"\r\n" + body


# --------------------------------------------------------------------------- HTTP client


class Closed(Exception):
    """The server closed the connection."""


class Conn:
    """One HTTP/1.1 keep-alive connection: write a request, read status, headers, body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @property
    def usable(self) -> bool:
        return not self.closed and not self.reader.at_eof()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.close()
            raise Closed("connection closed before the answer") from exc
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            self.close()
            raise Closed(f"answer {status} without Content-Length")
        end = lower.index(b"\r\n", at + 17)
        body = await self.reader.readexactly(int(lower[at + 17 : end]))
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    def close(self) -> None:
        self.closed = True
        self.writer.close()


async def get(port: int, path: str) -> tuple[int, bytes]:
    conn = await Conn.open(port)
    try:
        return await conn.request(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
    finally:
        conn.close()


# --------------------------------------------------------------------------- recording


LANE = b'"lane":"'


@dataclass
class Record:
    """Answers of the measured window (and what the warm-up got, for the stored check)."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    lanes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)  # open loop: actual send - scheduled send
    warm_accepted: int = 0
    warm_other: int = 0
    last_done: float = 0.0

    def answer(self, measured: bool, status: int, body: bytes, latency: float, done: float) -> None:
        if not measured:
            if status == 201:
                self.warm_accepted += 1
            else:
                self.warm_other += 1
            return
        self.latencies.append(latency)
        self.statuses[status] += 1
        self.last_done = max(self.last_done, done)
        at = body.find(LANE)
        if at >= 0:
            self.lanes[body[at + 8 : body.find(b'"', at + 8)].decode()] += 1

    def failure(self, measured: bool, exc: BaseException) -> None:
        if measured:
            self.failures[type(exc).__name__] += 1
        else:
            self.warm_other += 1


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def stats(values: list[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of latencies in seconds, in milliseconds."""
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000 if ordered else 0.0,
    }


# --------------------------------------------------------------------------- load shapes


async def closed_loop(
    port: int,
    cases: Cases,
    clients: int,
    warmup: float,
    duration: float,
    record: Record,
    window: Window,
) -> float:
    """`clients` connections, each sending its next case on its last answer; the measured
    window's start."""
    conns = await asyncio.gather(*(Conn.open(port) for _ in range(clients)))
    start = time.perf_counter() + warmup
    end = start + duration
    window.begin_at(start)

    async def client(conn: Conn) -> None:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            sent = time.perf_counter()
            if sent >= end:
                break
            measured = sent >= start
            try:
                if not conn.usable:
                    conn = await Conn.open(port)
                status, body = await conn.request(cases.next())
            except (OSError, Closed, asyncio.IncompleteReadError, ValueError) as exc:
                record.failure(measured, exc)
                conn.close()
                await asyncio.sleep(0.05)
                continue
            done = time.perf_counter()
            record.answer(measured, status, body, done - sent, done)
        conn.close()

    tasks = [asyncio.create_task(client(c)) for c in conns]
    try:
        _, pending = await asyncio.wait(tasks, timeout=warmup + duration + GRACE)
        record.failures["no answer within the grace period"] += len(pending)
    finally:
        for task in tasks:
            task.cancel()
    return start


class Pool:
    """Idle keep-alive connections, most recently used first (cold ones may have been
    closed by the server's keep-alive timeout; those are dropped). It opens a new one
    rather than queue a request, up to MAX_CONNECTIONS in use."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Conn] = []
        self.opened = 0
        self.busy = 0
        self.max_busy = 0
        self.limit = asyncio.Semaphore(MAX_CONNECTIONS)

    async def fill(self, count: int) -> None:
        self.idle = list(await asyncio.gather(*(Conn.open(self.port) for _ in range(count))))
        self.opened = count

    async def take(self) -> Conn:
        """A connection; on OSError the caller still owes `give(None)`."""
        await self.limit.acquire()
        self.busy += 1
        self.max_busy = max(self.max_busy, self.busy)
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                return conn
            conn.close()
        self.opened += 1
        return await Conn.open(self.port)

    def give(self, conn: Conn | None) -> None:
        self.busy -= 1
        self.limit.release()
        if conn is not None and conn.usable:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def open_loop(
    port: int,
    cases: Cases,
    rate: float,
    warmup: float,
    duration: float,
    record: Record,
    window: Window,
    pool: Pool,
) -> float:
    """Send at fixed times, `rate` per second, on a pool that grows rather than queue;
    latency counts from the scheduled time. Returns the measured window's start."""
    warm = int(rate * warmup)
    total = warm + int(rate * duration)
    await pool.fill(max(8, min(256, int(rate * 0.05))))
    begin = time.perf_counter() + 0.05
    start = begin + warm / rate
    window.begin_at(start)
    tasks: set[asyncio.Task[None]] = set()

    async def one(data: bytes, scheduled: float, measured: bool) -> None:
        try:
            conn = await pool.take()
        except OSError as exc:
            pool.give(None)
            record.failure(measured, exc)
            return
        sent = time.perf_counter()
        try:
            status, body = await conn.request(data)
        except (OSError, Closed, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            pool.give(conn)
            record.failure(measured, exc)
            return
        pool.give(conn)
        done = time.perf_counter()
        record.answer(measured, status, body, done - scheduled, done)
        if measured:
            record.lag.append(sent - scheduled)

    try:
        for i in range(total):
            scheduled = begin + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(cases.next(), scheduled, i >= warm))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=GRACE)
            record.failures["no answer within the grace period"] += len(pending)
    finally:
        for task in list(tasks):
            task.cancel()
        pool.close()
    return start


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`signoff serve` in a subprocess, in `workdir`, on a free port."""

    def __init__(self, workdir: Path, database_url: str, secret: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
        env.update(
            SIGNOFF_DATABASE_URL=database_url,
            SIGNOFF_WEBHOOK_SECRET=secret,
            SIGNOFF_LOG_LEVEL="WARNING",
            SIGNOFF_HOST=HOST,
            SIGNOFF_PORT=str(self.port),
            SIGNOFF_WORKERS=str(SERVER_WORKERS[0]),
        )
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("signoff")
        if script.is_file():
            return [str(script), "serve", "--port", str(self.port)]
        code = "from bot.cli import main; main()"
        return [sys.executable, "-c", code, "serve", "--port", str(self.port)]

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), cwd=self.workdir, env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(
                    f"signoff serve exited with {self.proc.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(OSError, Closed, asyncio.IncompleteReadError, ValueError):
                status, _ = await get(self.port, "/healthz")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"no answer from /healthz in {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    async def stop(self) -> int | None:
        """SIGINT, then wait; SIGKILL (this process only) if it will not exit."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


# --------------------------------------------------------------------------- databases


def plain_pg_url(url: str) -> str:
    """The URL as asyncpg takes it (no SQLAlchemy `+driver`)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


async def reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(plain_pg_url(url))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def count_cases(backend: str, url: str) -> int:
    if backend == "sqlite":
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM cases").fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(plain_pg_url(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM cases"))
    finally:
        await conn.close()


# --------------------------------------------------------------------------- a run


@dataclass
class Result:
    backend: str
    shape: str
    duration: float
    accepted: int
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]
    failures: dict[str, int]
    stored: int
    expected_stored: int
    durable: bool
    server_cpu: float  # cores used by the server during the measured window
    client_cpu: float  # cores used by this process during the measured window
    lanes: dict[str, int]
    offered_rate: float | None = None
    send_lag_p99_ms: float | None = None
    max_in_flight: int | None = None
    connections: int | None = None
    server_exit: int | None = None

    def line(self) -> str:
        stored = (
            f"stored {self.stored}/{self.expected_stored} {'ok' if self.durable else 'MISMATCH'}"
        )
        extra = ""
        if self.offered_rate is not None:
            extra = (
                f"  lag-p99 {self.send_lag_p99_ms:.1f} ms  in-flight<={self.max_in_flight}"
                f"  conns {self.connections}"
            )
        latency = f"p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  max {self.max_ms:6.0f} ms"
        return (
            f"{self.backend:<11}{self.shape:<13}{self.rate:>7.0f} cases/s  {latency}"
            f"  errors {self.errors}  {stored}"
            f"  cpu server {self.server_cpu:.2f} client {self.client_cpu:.2f}{extra}"
        )


async def run_one(
    backend: str, url: str, shape: str, args: argparse.Namespace, workdir: Path
) -> Result:
    secret = secrets.token_urlsafe(32)
    if backend == "postgresql":
        await reset_postgres(url)
    server = Server(workdir, url, secret)
    await server.start()
    try:
        cases = Cases(secret, server.port, args.seed, args.keyed)
        record = Record()
        pool = Pool(server.port)
        window = Window(server)
        runner: Coroutine[Any, Any, float]
        if shape == "closed":
            runner = closed_loop(
                server.port, cases, args.clients, args.warmup, args.duration, record, window
            )
        else:
            runner = open_loop(
                server.port, cases, args.rate, args.warmup, args.duration, record, window, pool
            )
        start = await runner
        window.stop()
        stored = await count_cases(backend, url)
    finally:
        code = await server.stop()
    # uvicorn re-raises the SIGINT it handled once it has shut down, and click turns the
    # KeyboardInterrupt into "Aborted!" and exit status 1: that is a clean stop.
    clean = code == 0 or (code == 1 and server.tail(1).strip() == "Aborted!")
    if not clean:
        print(f"warning: signoff serve exited with {code}:\n{server.tail()}", file=sys.stderr)
    result = summarize(backend, shape, args, record, start, window, stored, pool)
    result.server_exit = code
    return result


class Window:
    """CPU use of the server and of this process over the measured window."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.server_cpu = self.client_cpu = 0.0
        self.began = self.ended = 0.0
        self._s0 = self._c0 = 0.0

    def begin_at(self, at: float) -> None:
        """Note the CPU counters at perf_counter time `at` (the end of the warm-up)."""
        asyncio.get_running_loop().call_later(max(0.0, at - time.perf_counter()), self._begin)

    def _begin(self) -> None:
        self.began = time.perf_counter()
        self._s0, self._c0 = self.server.cpu(), time.process_time()

    def stop(self) -> None:
        self.ended = time.perf_counter()
        if not self.began:
            self._begin()
        self.server_cpu = max(0.0, self.server.cpu() - self._s0)
        self.client_cpu = max(0.0, time.process_time() - self._c0)


def summarize(
    backend: str,
    shape: str,
    args: argparse.Namespace,
    record: Record,
    start: float,
    window: Window,
    stored: int,
    pool: Pool,
) -> Result:
    ordered = sorted(record.latencies)
    accepted = record.statuses.get(201, 0)
    elapsed = max(record.last_done - start, 1e-9) if record.last_done else args.duration
    cpu_span = max(window.ended - window.began, 1e-9)
    errors = sum(n for s, n in record.statuses.items() if s != 201) + sum(record.failures.values())
    expected = accepted + record.warm_accepted
    result = Result(
        backend=backend,
        shape=f"closed-{args.clients}" if shape == "closed" else f"open-{args.rate:g}/s",
        duration=round(elapsed, 3),
        accepted=accepted,
        rate=accepted / elapsed,
        p50_ms=percentile(ordered, 50) * 1e3,
        p90_ms=percentile(ordered, 90) * 1e3,
        p99_ms=percentile(ordered, 99) * 1e3,
        max_ms=(ordered[-1] if ordered else 0.0) * 1e3,
        errors=errors,
        statuses={str(k): v for k, v in sorted(record.statuses.items())},
        failures=dict(record.failures),
        stored=stored,
        expected_stored=expected,
        durable=stored == expected,
        server_cpu=window.server_cpu / cpu_span,
        client_cpu=window.client_cpu / cpu_span,
        lanes=dict(record.lanes.most_common()),
    )
    if shape == "open":
        lag = sorted(record.lag)
        result.offered_rate = args.rate
        result.send_lag_p99_ms = percentile(lag, 99) * 1e3
        result.max_in_flight = pool.max_busy
        result.connections = pool.opened
    return result


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="Benchmark Signoff's intake (POST /v1/escalations) against a real "
        "`signoff serve` on SQLite, and on PostgreSQL when a URL is given.",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per run (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.5,
        help="uncounted warm-up seconds before each run (default 1.5)",
    )
    parser.add_argument(
        "--clients", type=int, default=50, help="closed loop: concurrent clients (default 50)"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="open loop: cases per second (default 200)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(PG_ENV),
        help=f"also run on this PostgreSQL database; its public schema is DROPPED "
        f"before each run (default ${PG_ENV}; e.g. {DEFAULT_POSTGRES_HINT})",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    parser.add_argument(
        "--shapes",
        default="closed,open",
        help="comma-separated load shapes: closed, open (default both)",
    )
    parser.add_argument(
        "--keyed",
        type=float,
        default=0.0,
        help="share of cases sent with an Idempotency-Key header (default 0)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the generated cases")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (`signoff serve --workers`, default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if not shapes or any(s not in ("closed", "open") for s in shapes):
        parser.error("--shapes takes closed, open or both")
    args.shapes = shapes
    if args.duration <= 0 or args.warmup < 0 or args.clients < 1 or args.rate <= 0:
        parser.error("--duration, --clients and --rate must be positive, --warmup not negative")
    if not 0 <= args.keyed <= 1:
        parser.error("--keyed is a share between 0 and 1")
    if args.no_sqlite and not args.postgres_url:
        parser.error("--no-sqlite needs --postgres-url")
    return args


def plan(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, str, str, Path]]:
    backends: list[tuple[str, str | None]] = []
    if not args.no_sqlite:
        backends.append(("sqlite", None))
    if args.postgres_url:
        backends.append(("postgresql", args.postgres_url))
    for backend, url in backends:
        for shape in args.shapes:
            workdir = tmp / f"{backend}-{shape}"
            workdir.mkdir()
            yield backend, url or f"sqlite:///{workdir / 'signoff.db'}", shape, workdir


async def bench(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        for backend, url, shape, workdir in plan(args, Path(tmp)):
            print(f"running {backend} {shape} ...", file=sys.stderr, flush=True)
            result = await run_one(backend, url, shape, args, workdir)
            results.append(result)
            if not args.json:
                print(result.line(), flush=True)
    if not args.json:
        for result in results:
            total = sum(result.lanes.values()) or 1
            mix = ", ".join(f"{lane} {n * 100 / total:.0f}%" for lane, n in result.lanes.items())
            print(f"lanes {result.backend} {result.shape}: {mix}")
    return results


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    SERVER_WORKERS[0] = args.workers
    factory = event_loop_factory()
    if not args.json:
        print(
            f"signoff intake benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"client loop {'uvloop' if factory else 'asyncio'}; warm-up {args.warmup:g} s, "
            f"measured {args.duration:g} s; stored = rows in `cases` / 201 answers (warm-up "
            f"included); cpu = cores used",
            flush=True,
        )
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(bench(args))
    except KeyboardInterrupt:
        print("ingest: interrupted (the server was stopped)", file=sys.stderr)
        return 130
    except Exception as exc:  # a setup failure (server, database): say what, not a traceback
        print(f"ingest: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "client_loop": "uvloop" if factory else "asyncio",
                    "settings": {
                        k: getattr(args, k)
                        for k in (
                            "duration",
                            "warmup",
                            "clients",
                            "rate",
                            "shapes",
                            "keyed",
                            "seed",
                        )
                    },
                    "results": [r.__dict__ for r in results],
                },
                indent=2,
            )
        )
    return 0 if all(r.durable for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
