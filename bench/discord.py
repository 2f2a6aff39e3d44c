"""Discord benchmark: a real `signoff serve` (subprocess) connected through discord.py to
the Discord-compatible test server (`tests/discord_api.py`, in this process).

Three measurements:

* cards: N cases (default 100) submitted over the signed webhook at 50/s; latency from
  just before each `POST /v1/escalations` to its card's `POST /channels/{id}/messages`
  arriving at the Discord stand-in.
* clicks: N reviewers click Approve on N cards at once (N INTERACTION_CREATE dispatches
  sent over the gateway in one burst); latency from each dispatch leaving the stand-in
  to the bot's interaction callback (the modal) arriving back. Discord allows 3 s.
* submissions: the N modals submitted at once; latency from dispatch to the callback,
  which comes after the decision is stored.

    .venv/bin/python bench/discord.py
    .venv/bin/python bench/discord.py --postgres-url postgresql://u:p@127.0.0.1/db --json

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest import Server, reset_postgres, stats  # noqa: E402

from bot import signing  # noqa: E402
from tests.discord_api import Callback, DiscordApi, discord_api  # noqa: E402

SECRET = "bench-webhook-secret"
TOKEN = "bench-discord-token"
GUILD = "100000000000000001"
CHANNEL = "200000000000000001"
ROLE = "300000000000000001"
CASE_IN_FOOTER = re.compile(r"Case ([0-9a-f]+)")
WARM_UP = 10  # clicks and submissions first, not counted (imports, pools, caches)


def policy_text() -> str:
    return f"""lanes:
  review:
    channels: {{discord: "{CHANNEL}"}}
    sla: 4h
    approvers: {{discord: ["role:{ROLE}"]}}
kinds:
  refund:
    reason_codes: [policy_match, policy_violation, other]
rules:
  - if: {{kind: refund}}
    lane: review
  - lane: auto
"""


def case_body(n: int) -> bytes:
    return orjson.dumps(
        {
            "kind": "refund",
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


def user(n: int) -> str:
    return str(400000000000000000 + n)


async def post_cases(
    client: httpx.AsyncClient, api: DiscordApi, count: int, rate: float
) -> tuple[list[str], list[float]]:
    """Submit `count` cases at `rate`/s; their IDs, and each one's latency to its card."""
    sent: dict[str, float] = {}
    ids: list[str] = []
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        body = case_body(n)
        headers = {
            "X-Signoff-Signature": signing.sign(
                SECRET, "POST", "/v1/escalations", body, int(time.time())
            ),
            "Content-Type": "application/json",
        }
        before = time.monotonic()
        response = await client.post("/v1/escalations", content=body, headers=headers)
        response.raise_for_status()
        case_id = str(response.json()["id"])
        sent[case_id] = before
        ids.append(case_id)

    def posted() -> dict[str, float]:
        found: dict[str, float] = {}
        for call in api.of("POST /channels/{channel_id}/messages"):
            if call.status != 200 or not isinstance(call.json, dict):
                continue
            for embed in call.json.get("embeds") or []:
                match = CASE_IN_FOOTER.search(str((embed.get("footer") or {}).get("text", "")))
                if match:
                    found.setdefault(match.group(1), call.at)
        return found

    await api.wait_for(lambda a: len(posted()) >= count, timeout=60)
    arrived = posted()
    return ids, [arrived[i] - sent[i] for i in ids]


async def burst_clicks(api: DiscordApi, cards: list[tuple[str, Any]]) -> list[Callback]:
    payloads = [
        api.button_click(user(n), f"signoff:approve:{case_id}", message.id, CHANNEL)
        for n, (case_id, message) in enumerate(cards)
    ]
    return list(await asyncio.gather(*(api.interact(p, timeout=30) for p in payloads)))


async def burst_floor(api: DiscordApi, count: int) -> list[Callback]:
    """The floor: clicks on a button Signoff does not know, answered with no database
    work: what discord.py, the gateway and the HTTP callback cost on their own."""
    button = {"type": 2, "style": 2, "label": "Old", "custom_id": "signoff:unknown:x"}
    orphan = api.seed_message(CHANNEL, components=[{"type": 1, "components": [button]}])
    payloads = [
        api.button_click(user(n), "signoff:unknown:x", orphan.id, CHANNEL) for n in range(count)
    ]
    return list(await asyncio.gather(*(api.interact(p, timeout=30) for p in payloads)))


async def burst_submissions(
    api: DiscordApi, cards: list[tuple[str, Any]], modals: list[Callback]
) -> list[Callback]:
    payloads = [
        api.modal_submit(
            user(n),
            modal.data["custom_id"],
            {"code": ["policy_match"], "reason": "Duplicate charge."},
            CHANNEL,
            message.id,
        )
        for n, ((_, message), modal) in enumerate(zip(cards, modals, strict=True))
    ]
    return list(await asyncio.gather(*(api.interact(p, timeout=30) for p in payloads)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    count = args.clicks + WARM_UP
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "policy.yaml").write_text(policy_text())
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
        database = args.postgres_url or f"sqlite:///{work / 'signoff.db'}"
        async with discord_api(token=TOKEN, guild_id=GUILD, channels=[CHANNEL]) as api:
            for n in range(count):
                api.add_member(user(n), f"reviewer{n}", roles=[ROLE])
            server = Server(work, database, SECRET)
            server.env.update(
                SIGNOFF_POLICY=str(work / "policy.yaml"),
                SIGNOFF_DISCORD_BOT_TOKEN=TOKEN,
                SIGNOFF_DISCORD_API_URL=api.url,
                SIGNOFF_WORKERS="1",
                # 100 cards into one channel at 50/s is past Discord's limits: this
                # measures the pipeline, so the pacing and the stand-in's buckets are lifted
                SIGNOFF_CHANNEL_RATE="50",
                SIGNOFF_CHANNEL_BURST="50",
            )
            api.message_limit = api.global_limit = 1_000_000
            await server.start()
            try:
                await api.wait_connected(timeout=30)
                base = f"http://127.0.0.1:{server.port}"
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    ids, card_latency = await post_cases(client, api, count, args.rate)
                await asyncio.sleep(0.5)  # let the last deliveries be recorded
                by_case = {
                    m.embeds[0]["footer"]["text"].split()[1]: m
                    for m in api.messages[CHANNEL]
                    if m.embeds
                }
                cards = [(i, by_case[i]) for i in ids]
                warm, measured = cards[:WARM_UP], cards[WARM_UP:]
                # the first burst opens the connection pool for the callbacks; then measure
                await burst_floor(api, args.clicks)
                floor = await burst_floor(api, args.clicks)
                warm_modals = await burst_clicks(api, warm)
                await burst_submissions(api, warm, warm_modals)
                modals = await burst_clicks(api, measured)
                opened = sum(1 for m in modals if m.type == 9)
                decided = await burst_submissions(api, measured, modals)
                recorded = sum(1 for d in decided if "Recorded" in str(d.data.get("content", "")))
            finally:
                await server.stop()
            return {
                "database": "postgresql" if args.postgres_url else "sqlite",
                "concurrency": args.clicks,
                "case_to_card": stats(card_latency[WARM_UP:]),
                "floor_unknown_button": stats([f.elapsed for f in floor]),
                "click_to_callback": stats([m.elapsed for m in modals]),
                "submit_to_callback": stats([d.elapsed for d in decided]),
                "modals_opened": opened,
                "decisions_recorded": recorded,
                "violations": len(api.violations),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=100, help="concurrent clicks")
    parser.add_argument("--rate", type=float, default=50.0, help="cases per second")
    parser.add_argument("--postgres-url", help="run on this PostgreSQL (its schema is reset)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"database: {result['database']}")
    for name, label in (
        ("floor_unknown_button", "floor: a button Signoff does not know -> callback"),
        ("case_to_card", f"case -> card posted at {args.rate:.0f}/s"),
        ("click_to_callback", "click -> interaction callback (modal)"),
        ("submit_to_callback", "modal submit -> callback (decided)"),
    ):
        s = result[name]
        print(
            f"{label}, {s['n']} at {result['concurrency']} concurrent: p50 {s['p50_ms']:.1f} ms, "
            f"p90 {s['p90_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
        )
    print(
        f"modals opened {result['modals_opened']}/{result['concurrency']}, decisions recorded "
        f"{result['decisions_recorded']}/{result['concurrency']}, "
        f"limit violations {result['violations']}"
    )


if __name__ == "__main__":
    main()
