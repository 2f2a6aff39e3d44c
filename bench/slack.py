"""Slack benchmark: a real `signoff serve` (subprocess) against the Slack-compatible
test server (`tests/slack_api.py`, in this process).

Two measurements:

* delivery: cases submitted over the signed webhook at a steady rate (default 50/s)
  across 10 lanes with 10 channels; latency from just before each `POST
  /v1/escalations` is sent to the moment its `chat.postMessage` arrives at the Slack
  stand-in. Needs the outbox to wake on commit, not to poll.
  Slack takes about one message a second per channel, which this load (5 a second per
  channel) exceeds: this run lifts the pacing in both the bot and the stand-in to 50 a
  second, to measure the pipeline, not Slack's limit.
* one channel: a burst of 50 cases into one lane, with Slack's real limit in both the bot
  (SIGNOFF_CHANNEL_RATE=1, SIGNOFF_CHANNEL_BURST=3, the defaults) and the stand-in;
  how long until the last card is posted, and how many 429s the stand-in answered (the
  pacing is right when that is 0).
* clicks: N concurrent reviewers (default 100) click Approve on N cards, signed as
  Slack signs (`block_actions`, form-encoded); latency from sending the click to its
  HTTP 200 (Slack's limit is 3 s), and on to the modal's `views.open`. Then N
  concurrent modal submissions (`view_submission`), whose answer comes after the
  decision is stored.

    .venv/bin/python bench/slack.py
    .venv/bin/python bench/slack.py --postgres-url postgresql://u:p@127.0.0.1/db --json

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest import Conn, Server, reset_postgres, stats  # noqa: E402

from bot import signing  # noqa: E402
from tests.slack_api import Call, SlackApi, slack_api  # noqa: E402

SECRET = "bench-webhook-secret"
SIGNING_SECRET = "bench-slack-signing-secret"
CHANNELS = 10
APPROVER = "U0ALICE"
TITLE = re.compile(r"bench case (\d+)")
WARM_UP = 2.0  # seconds of cases sent first and not counted (imports, pools, caches)


def policy_text(channels: int) -> str:
    lanes = "\n".join(
        f"  lane_{i}:\n    channels: {{slack: C0BENCH{i}}}\n    sla: 4h\n"
        f"    approvers: {{slack: [{APPROVER}]}}"
        for i in range(channels)
    )
    rules = "\n".join(f"  - if: {{kind: kind_{i}}}\n    lane: lane_{i}" for i in range(channels))
    kinds = "\n".join(
        f"  kind_{i}:\n    reason_codes: [policy_match, other]" for i in range(channels)
    )
    return f"lanes:\n{lanes}\nkinds:\n{kinds}\nrules:\n{rules}\n  - lane: auto\n"


def case_body(n: int) -> bytes:
    return orjson.dumps(
        {
            "kind": f"kind_{n % CHANNELS}",
            "title": f"bench case {n}",
            "question": "Approve this refund?",
            "summary": "A customer asks for a refund of a duplicate charge.",
            "recommendation": {
                "action": "approve",
                "confidence": 0.8,
                "alternatives": [{"action": "reject", "confidence": 0.2}],
            },
            "risk": {"amount": 120.0 + n, "currency": "EUR", "reversible": True},
            "facts": {"order": f"A-{n}", "customer": "c-42", "channel": "web"},
            "evidence": [{"label": "Order", "url": f"https://shop.example.com/o/{n}"}],
        }
    )


def slack_headers(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    base = b"v0:" + stamp.encode() + b":" + body
    digest = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest,
    }


def form(payload: dict[str, Any]) -> bytes:
    return ("payload=" + quote(json.dumps(payload))).encode()


async def deliveries(
    client: httpx.AsyncClient, slack: SlackApi, rate: float, seconds: float
) -> dict[str, Any]:
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}

    def on_call(call: Call) -> None:
        if call.method == "chat.postMessage" and call.status == 200:
            found = TITLE.search(str(call.params.get("text", "")))
            if found and "thread_ts" not in call.params:
                arrived.setdefault(int(found.group(1)), call.at)

    slack.on_call.append(on_call)
    total = int(rate * (seconds + WARM_UP))
    start = time.monotonic() + 0.2
    errors = 0

    async def one(n: int) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        body = case_body(n)
        headers = {
            signing.HEADER: signing.sign(SECRET, "POST", "/v1/escalations", body, int(time.time())),
            "Content-Type": "application/json",
        }
        sent[n] = time.monotonic()
        response = await client.post("/v1/escalations", content=body, headers=headers)
        if response.status_code != 201:
            errors += 1

    await asyncio.gather(*(one(n) for n in range(total)))
    deadline = time.monotonic() + 30
    while len(arrived) < total - errors and time.monotonic() < deadline:  # noqa: ASYNC110 - a hook counts, this waits
        await asyncio.sleep(0.05)
    slack.on_call.remove(on_call)
    warm = int(rate * WARM_UP)
    latencies = [arrived[n] - sent[n] for n in sent if n in arrived and n >= warm]
    worst = sorted(((arrived[n] - sent[n], n) for n in sent if n in arrived), reverse=True)[:8]
    return {
        "worst": [(round(latency * 1000, 1), n) for latency, n in worst],
        "rate": rate,
        "cases": total - warm,
        "errors": errors,
        "lost": total - warm - errors - len(latencies),
        **stats(latencies),
    }


async def one_channel(client: httpx.AsyncClient, slack: SlackApi, cases: int) -> dict[str, Any]:
    """`cases` cases into one lane at once; when each card arrives, and the 429s."""
    arrived: dict[int, float] = {}

    def on_call(call: Call) -> None:
        if call.method == "chat.postMessage" and call.status == 200:
            found = TITLE.search(str(call.params.get("text", "")))
            if found and "thread_ts" not in call.params:
                arrived.setdefault(int(found.group(1)), call.at)

    slack.on_call.append(on_call)
    refused_before = len(slack.ratelimited)
    numbers = [n * CHANNELS for n in range(cases)]  # kind_0: lane_0, channel C0BENCH0

    async def one(n: int) -> int:
        body = case_body(n)
        headers = {
            signing.HEADER: signing.sign(SECRET, "POST", "/v1/escalations", body, int(time.time())),
            "Content-Type": "application/json",
        }
        response = await client.post("/v1/escalations", content=body, headers=headers)
        return response.status_code

    start = time.monotonic()
    statuses = await asyncio.gather(*(one(n) for n in numbers))
    submitted = time.monotonic() - start
    deadline = time.monotonic() + cases * 2 + 30
    while len(arrived) < cases and time.monotonic() < deadline:  # noqa: ASYNC110 - a hook counts, this waits
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # a doubled card would land by now
    slack.on_call.remove(on_call)
    cards = [m for m in slack.messages["C0BENCH0"] if m.thread_ts is None and m.user is None]
    times = sorted(t - start for t in arrived.values())
    return {
        "cases": cases,
        "errors": sum(1 for s in statuses if s != 201),
        "submitted_s": round(submitted, 2),
        "first_card_s": round(times[0], 2) if times else None,
        "last_card_s": round(times[-1], 2) if times else None,
        "cards": len(cards),
        "lost": cases - len(arrived),
        "answered_429": len(slack.ratelimited) - refused_before,
    }


def click_payload(card: Any, n: int) -> dict[str, Any]:
    button = next(
        e
        for b in card.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "signoff_approve"
    )
    return {
        "type": "block_actions",
        "user": {"id": APPROVER, "username": "alice"},
        "api_app_id": "A111",
        "token": "unused",
        "container": {"type": "message", "message_ts": card.ts, "channel_id": card.channel},
        "trigger_id": f"{n}.{time.time():.0f}.bench",
        "team": {"id": "T111"},
        "channel": {"id": card.channel},
        "message": {"ts": card.ts, "text": card.text, "blocks": card.blocks},
        "state": {"values": {}},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [
            {
                "action_id": "signoff_approve",
                "block_id": "signoff_actions",
                "text": button["text"],
                "value": button["value"],
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def submission(view: dict[str, Any], view_id: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T111"},
        "user": {"id": APPROVER, "username": "alice"},
        "api_app_id": "A111",
        "trigger_id": "1.2.bench",
        "view": {
            "id": view_id,
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "blocks": view["blocks"],
            "title": view["title"],
            "state": {
                "values": {
                    "reason_code": {
                        "code": {
                            "type": "static_select",
                            "selected_option": {
                                "text": {"type": "plain_text", "text": "policy_match"},
                                "value": "policy_match",
                            },
                        }
                    },
                    "reason": {"text": {"type": "plain_text_input", "value": None}},
                }
            },
        },
        "response_urls": [],
    }


def raw_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def burst_in_child(port: int, requests: list[bytes]) -> list[tuple[float, float, int, bytes]]:
    """In a process of its own (the Slack stand-in, in this one, must not slow the
    clock of the clients): open one keep-alive connection per request, then send
    them all at the same moment; (sent, answered, status, body) for each.
    `time.monotonic` is the same clock in every process on Linux."""

    async def run() -> list[tuple[float, float, int, bytes]]:
        conns = [await Conn.open(port) for _ in requests]
        # one round trip each first, as connections a keep-alive pool holds
        await asyncio.gather(*(c.request(raw_post(port, "/slack/warm", b"", {})) for c in conns))
        go = asyncio.Event()

        async def one(conn: Conn, data: bytes) -> tuple[float, float, int, bytes]:
            await go.wait()
            started = time.monotonic()
            status, body = await conn.request(data)
            return started, time.monotonic(), status, body

        tasks = [asyncio.create_task(one(c, r)) for c, r in zip(conns, requests, strict=True)]
        await asyncio.sleep(0.1)
        go.set()
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for conn in conns:
                conn.close()

    return asyncio.run(run())


async def burst(
    pool: ProcessPoolExecutor, port: int, requests: list[bytes]
) -> list[tuple[float, float, int, bytes]]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, burst_in_child, port, requests)


async def clicks(port: int, slack: SlackApi, concurrency: int) -> dict[str, Any]:
    cards = [
        m
        for messages in slack.messages.values()
        for m in messages
        if m.thread_ts is None and m.user is None and m.blocks
    ][:concurrency]
    # A light raw client (as bench/ingest.py's), so the numbers are Signoff's, not httpx's.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    opened: dict[str, float] = {}

    def on_call(call: Call) -> None:
        if call.method == "views.open":
            opened[str(call.params.get("trigger_id"))] = call.at

    slack.on_call.append(on_call)
    payloads = [click_payload(card, n) for n, card in enumerate(cards)]
    bodies = [form(p) for p in payloads]
    # The floor: as many concurrent requests that Signoff answers at once (404).
    floor = await burst(pool, port, [raw_post(port, "/slack/nothing", b, {}) for b in bodies])
    clicked = await burst(
        pool, port, [raw_post(port, "/slack/events", b, slack_headers(b)) for b in bodies]
    )
    assert {status for _, _, status, _ in clicked} == {200}, clicked[0]
    sent = {p["trigger_id"]: c[0] for p, c in zip(payloads, clicked, strict=True)}
    deadline = time.monotonic() + 30
    while len(opened) < len(cards) and time.monotonic() < deadline:  # noqa: ASYNC110 - a hook counts, this waits
        await asyncio.sleep(0.02)
    slack.on_call.remove(on_call)
    to_modal = [opened[t] - sent[t] for t in sent if t in opened]

    views = {str(c.params["trigger_id"]): c for c in slack.of("views.open")}
    submissions = []
    for payload in payloads:
        call = views.get(payload["trigger_id"])
        if call is not None:
            view_id = str(call.response.get("view", {}).get("id", "V0"))
            body = form(submission(call.params["view"], view_id))
            submissions.append(raw_post(port, "/slack/events", body, slack_headers(body)))
    decided = await burst(pool, port, submissions)
    assert {(status, body) for _, _, status, body in decided} == {(200, b"")}, decided[0]
    pool.shutdown()
    return {
        "concurrency": len(cards),
        "floor_404": stats([done - start for start, done, _, _ in floor]),
        "click_to_200": stats([done - start for start, done, _, _ in clicked]),
        "click_to_views_open": stats(to_modal),
        "submit_to_200": stats([done - start for start, done, _, _ in decided]),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="cases per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the delivery run")
    parser.add_argument("--clicks", type=int, default=100, help="concurrent clicks")
    parser.add_argument("--burst", type=int, default=50, help="cases into one channel at once")
    parser.add_argument("--postgres-url", help="run on this PostgreSQL (its schema is reset)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "policy.yaml").write_text(policy_text(CHANNELS))
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
        database = args.postgres_url or f"sqlite:///{work / 'signoff.db'}"
        async with slack_api(users={APPROVER: {"name": "alice", "email": "a@example.com"}}) as sl:
            server = Server(work, database, SECRET)
            server.env.update(
                SIGNOFF_POLICY=str(work / "policy.yaml"),
                SIGNOFF_SLACK_BOT_TOKEN="xoxb-bench",
                SIGNOFF_SLACK_SIGNING_SECRET=SIGNING_SECRET,
                SIGNOFF_SLACK_API_URL=sl.url,
                SIGNOFF_WORKERS="1",
                SIGNOFF_CHANNEL_RATE="50",  # this run measures the pipeline, not the pace
                SIGNOFF_CHANNEL_BURST="50",
            )
            sl.channel_rate, sl.channel_burst = 50.0, 50
            await server.start()
            try:
                base = f"http://127.0.0.1:{server.port}"
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
                async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
                    delivery = await deliveries(client, sl, args.rate, args.seconds)
                    clicked = await clicks(server.port, sl, args.clicks)
            finally:
                await server.stop()
            violations = len(sl.violations)
        paced = await paced_run(work, args.postgres_url, args.burst)
        result = {
            "database": "postgresql" if args.postgres_url else "sqlite",
            "delivery": delivery,
            "one_channel": paced,
            "clicks": clicked,
            "slack_violations": violations,
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    d = delivery
    print(f"database: {result['database']}")
    print(
        f"case -> chat.postMessage at {d['rate']:.0f}/s over {CHANNELS} channels, "
        f"{d['cases']} cases ({d['errors']} errors, {d['lost']} lost): "
        f"p50 {d['p50_ms']:.1f} ms, p90 {d['p90_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms, "
        f"max {d['max_ms']:.1f} ms"
    )
    for name, label in (
        ("floor_404", "floor: unknown path -> 404"),
        ("click_to_200", "click -> HTTP 200"),
        ("click_to_views_open", "click -> views.open"),
        ("submit_to_200", "modal submit -> HTTP 200 (decided)"),
    ):
        s = clicked[name]
        print(
            f"{label} at {clicked['concurrency']} concurrent: p50 {s['p50_ms']:.1f} ms, "
            f"p90 {s['p90_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
        )
    b = paced
    print(
        f"{b['cases']} cases into one channel at Slack's pace (1/s after a burst of 3): "
        f"submitted in {b['submitted_s']:.2f} s, first card {b['first_card_s']} s, "
        f"last card {b['last_card_s']} s; {b['cards']} cards ({b['lost']} lost), "
        f"{b['answered_429']} answered 429"
    )
    print(f"Block Kit violations seen by the Slack stand-in: {result['slack_violations']}")


async def paced_run(work: Path, postgres_url: str | None, cases: int) -> dict[str, Any]:
    """A fresh `signoff serve` and stand-in, both at Slack's real per-channel limit."""
    if postgres_url:
        await reset_postgres(postgres_url)
    database = postgres_url or f"sqlite:///{work / 'paced.db'}"
    async with slack_api(users={APPROVER: {"name": "alice", "email": "a@example.com"}}) as sl:
        server = Server(work, database, SECRET)
        server.env.update(
            SIGNOFF_POLICY=str(work / "policy.yaml"),
            SIGNOFF_SLACK_BOT_TOKEN="xoxb-bench",
            SIGNOFF_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SIGNOFF_SLACK_API_URL=sl.url,
            SIGNOFF_WORKERS="1",
        )
        await server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                return await one_channel(client, sl, cases)
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
