"""Client kit benchmark: N workflows (default 500) each waiting on its own case with
`signoff_client.AsyncSignoff.wait()` (long-poll) against a real `signoff serve`
(subprocess, shipped policy), while a reviewer approves the cases one after another
in the web inbox.

Printed: the time from each decision's commit (the decision's own `at`, written in
the transaction; same machine, same clock) to its `wait()` returning, p50/p90/p99/max;
the same with the decisions sent 16 at a time; and the server's resident memory per
waiting client (RSS with every client waiting, less RSS before, over N; each client is
its own HTTP connection, as N workflows would be). The second round's memory reads
low: the first round's memory is reused (RSS does not shrink); quote the first.

    .venv/bin/python bench/client.py
    .venv/bin/python bench/client.py --postgres-url postgresql://u:p@127.0.0.1/db

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import Server, reset_postgres, stats
from signoff_client import AsyncSignoff, Decision
from web import CSRF, SECRET, fill, login_link


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def waiting_round(
    base: str, ids: list[str], browser: httpx.AsyncClient, csrf: str, server: Server, batch: int
) -> tuple[dict[str, float], float]:
    """Every case waited on by its own client; approved `batch` at a time. Returns the
    commit-to-return latencies and the RSS per waiting client (KiB)."""
    clients = [AsyncSignoff(base, secret=SECRET, timeout=30, retries=0) for _ in ids]
    latencies: list[float] = []
    from_send: list[float] = []
    sent: dict[str, float] = {}
    assert server.proc is not None
    before = rss_kib(server.proc.pid)

    async def wait_one(client: AsyncSignoff, case_id: str) -> None:
        decision: Decision = await client.wait(case_id, timeout=120, on_timeout=None)
        returned = time.time()
        assert decision.action == "approve", decision
        assert isinstance(decision.at, datetime)
        latencies.append(returned - decision.at.timestamp())
        from_send.append(returned - sent[case_id])

    waits = [asyncio.create_task(wait_one(c, i)) for c, i in zip(clients, ids, strict=True)]
    await asyncio.sleep(3)  # every long-poll is parked on the server
    waiting = rss_kib(server.proc.pid)
    per_client = (waiting - before) / len(ids)
    for start in range(0, len(ids), batch):

        async def approve(case_id: str) -> None:
            sent[case_id] = time.time()
            answer = await browser.post(
                f"/inbox/cases/{case_id}",
                data={"csrf": csrf, "action": "approve", "reason_code": "within_policy"},
            )
            assert answer.status_code == 303, answer.text[:300]

        await asyncio.gather(*(approve(i) for i in ids[start : start + batch]))
    await asyncio.wait_for(asyncio.gather(*waits), 120)
    for client in clients:
        await client.aclose()
    sent_stats = stats(from_send)
    print(
        f"  (from the form's POST being sent: p50 {sent_stats['p50_ms']:.1f} ms, "
        f"p99 {sent_stats['p99_ms']:.1f} ms)"
    )
    return stats(latencies), per_client


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
            url = args.postgres_url
        else:
            url = f"sqlite:///{workdir / 'bench.db'}"
        server = Server(workdir, url, SECRET)
        await server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=base, timeout=60) as api:
                ids = await fill(api, 2 * args.clients)
            token = await asyncio.to_thread(login_link, server)
            async with httpx.AsyncClient(base_url=base, timeout=60) as browser:
                signed = await browser.post("/inbox/login", data={"token": token})
                assert signed.status_code == 303, signed.text
                page = (await browser.get(f"/inbox/cases/{ids[0]}")).text
                match = CSRF.search(page)
                assert match is not None
                print(
                    f"database: {'postgresql' if args.postgres_url else 'sqlite'}; "
                    f"{args.clients} clients waiting at once, each on its own case"
                )
                for label, chunk, batch in (
                    ("one decision at a time", ids[: args.clients], 1),
                    ("16 decisions at a time", ids[args.clients :], 16),
                ):
                    found, per_client = await waiting_round(
                        base, chunk, browser, match.group(1), server, batch
                    )
                    print(
                        f"commit -> wait() returns, {label}: n {found['n']:.0f}, "
                        f"p50 {found['p50_ms']:.1f} ms, p90 {found['p90_ms']:.1f} ms, "
                        f"p99 {found['p99_ms']:.1f} ms, max {found['max_ms']:.1f} ms; "
                        f"server RSS per waiting client {per_client:.1f} KiB"
                    )
        finally:
            await server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
