"""The web inbox over real HTTP: sign-in, the pages, deciding with the same rules as chat,
CSRF, escaping, and decisions crossing between the web and a chat platform."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from adapters.memory import MemoryAdapter
from bot.clock import FrozenClock
from bot.protocols import Reviewer
from bot.store.tables import decisions, events, web_logins, web_sessions
from policies.schema import Policy
from tests.conftest import case
from tests.webkit import WEB_POLICY, Inbox, csrf_of, running_inbox


@pytest.fixture
async def inbox(database_url: str, memory: MemoryAdapter) -> AsyncIterator[Inbox]:
    async with running_inbox(database_url, memory) as found:
        yield found


async def rows(inbox: Inbox, table: object, *where: object) -> list[dict[str, object]]:
    async with inbox.runtime.engine.connect() as conn:
        found = await conn.execute(select(table).where(*where))  # type: ignore[call-overload]
        return [dict(r) for r in found.mappings()]


async def kinds_of_events(inbox: Inbox, case_id: str) -> list[str]:
    return [str(e["type"]) for e in await rows(inbox, events, events.c.case_id == case_id)]


# -- sign-in -------------------------------------------------------------------------


async def test_a_link_signs_in_once_with_a_safe_cookie(inbox: Inbox) -> None:
    token = await inbox.link("Carol@Example.com ")
    async with inbox.browser(None) as client:
        shown = await client.get("/inbox/login", params={"token": token})
        assert shown.status_code == 200
        assert "Sign in as carol@example.com" in shown.text
        assert shown.headers["referrer-policy"] == "no-referrer"
        # opening the link spends nothing: a mail scanner's GET leaves it good
        assert (await client.get("/inbox/login", params={"token": token})).status_code == 200
        signed = await client.post("/inbox/login", data={"token": token})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/inbox/"
        cookie = signed.headers["set-cookie"].lower()
        for part in ("signoff_session=", "httponly", "samesite=lax", "path=/inbox"):
            assert part in cookie
        assert "secure" not in cookie  # plain http here; https base URLs set Secure
        queue = await client.get("/inbox/")
        assert queue.status_code == 200
        assert "carol@example.com" in queue.text
    async with inbox.browser(None) as other:
        again = await other.post("/inbox/login", data={"token": token})
        assert again.status_code == 400
        assert "used already, has expired" in again.text
        assert "signoff_session" not in again.headers.get("set-cookie", "")
        assert (await other.get("/inbox/login", params={"token": token})).status_code == 400
    kept = await rows(inbox, web_logins, web_logins.c.email == "carol@example.com")
    assert len(kept) == 1
    assert kept[0]["token_hash"] != token
    assert kept[0]["used_at"] is not None
    sessions = await rows(inbox, web_sessions)
    assert [s["email"] for s in sessions] == ["carol@example.com"]
    assert all(token not in str(v) for s in sessions for v in s.values())


@pytest.mark.parametrize(
    "token", ["", "x", "not-a-token-but-long-enough-to-look-up", "a" * 101, "\x00" * 30]
)
async def test_a_bad_token_signs_nobody_in(inbox: Inbox, token: str) -> None:
    async with inbox.browser(None) as client:
        answer = await client.post("/inbox/login", data={"token": token})
        assert answer.status_code == 400
        assert "cannot be used" in answer.text
    assert await rows(inbox, web_sessions) == []


async def test_a_link_runs_out_after_15_minutes(sqlite_url: str, memory: MemoryAdapter) -> None:
    clock = FrozenClock(datetime(2026, 12, 5, 9, 0, tzinfo=UTC))
    async with running_inbox(sqlite_url, memory, clock=clock, web_session_hours=1) as inbox:
        token = await inbox.link("carol@example.com")
        clock.advance(15 * 60 + 1)
        async with inbox.browser(None) as client:
            assert (await client.post("/inbox/login", data={"token": token})).status_code == 400
            fresh = await inbox.link("carol@example.com")
            assert (await client.post("/inbox/login", data={"token": fresh})).status_code == 303
            assert (await client.get("/inbox/")).status_code == 200
            clock.advance(3601)  # the session's hour is up
            answer = await client.get("/inbox/")
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/inbox/signin?next=")


async def test_signed_out_pages_send_to_sign_in_and_posts_are_refused(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser(None) as client:
        for path in ("/inbox/", "/inbox/board", "/inbox/history", "/inbox/report"):
            answer = await client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/inbox/signin")
        page = await client.get(f"/inbox/cases/{made['id']}")
        assert page.status_code == 303
        posted = await client.post(
            f"/inbox/cases/{made['id']}", data={"action": "approve", "reason_code": "other"}
        )
        assert posted.status_code == 403
        assert (await client.get("/inbox/live")).status_code == 401
        signin = await client.get("/inbox/signin", params={"next": "https://evil.example/"})
        assert "signoff web login-link" in signin.text
    assert await rows(inbox, decisions) == []


async def test_sign_out_ends_the_session(inbox: Inbox) -> None:
    async with inbox.browser("carol@example.com") as client:
        page = await client.get("/inbox/")
        assert (await client.post("/inbox/logout", data={})).status_code == 403  # no token
        assert (await client.get("/inbox/")).status_code == 200
        answer = await client.post("/inbox/logout", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        assert (await client.get("/inbox/")).status_code == 303
    assert await rows(inbox, web_sessions) == []


# -- the pages -----------------------------------------------------------------------


async def test_the_queue_lists_open_cases_by_due_time_with_filters(inbox: Inbox) -> None:
    review = await inbox.api.submit(case(title="Review me"))
    expert = await inbox.api.submit(
        case(title="Ask an expert", recommendation={"action": "approve", "confidence": 0.5})
    )
    assert (review["lane"], expert["lane"]) == ("review", "expert")
    async with inbox.browser("carol@example.com") as client:
        page = (await client.get("/inbox/")).text
        assert "2 open" in page
        # review is due in 4h, expert in 24h: the sooner first
        assert page.index("Review me") < page.index("Ask an expert")
        assert "due in 3h 59m" in page or "due in 4h 0m" in page
        only = (await client.get("/inbox/", params={"lane": "expert"})).text
        assert "Ask an expert" in only
        assert "Review me" not in only
        assert "Review me" not in (await client.get("/inbox/", params={"kind": "refund"})).text
        for params, says in (
            ({"lane": "nope"}, "there is no lane"),
            ({"kind": "NOT A KIND"}, "a kind is 1 to 64"),
            ({"status": "approved"}, "status is one of pending, info_requested"),
            ({"page": "0"}, "page is a whole number"),
            ({"page": "x"}, "page is a whole number"),
        ):
            answer = await client.get("/inbox/", params=params)
            assert answer.status_code == 400, params
            assert says in answer.text, params
        board = (await client.get("/inbox/board")).text
        assert "Waiting" in board
        assert "Review me" in board


async def test_the_case_page_is_the_chat_card(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
    for shown in (
        "Expense ER-1: team dinner",
        "Approve this expense?",
        "Dinner for 8 after the release.",
        "<strong>approve</strong> at 82% confidence",
        "runner-up <strong>reject</strong> at 18%",
        "Within the per-head limit.",
        "confidence 0.82 is below 0.90",
        "cost_center",
        'href="https://expenses.example.com/r/1"',
        "missing receipt",
        'value="approve"',
        'value="request_info"',
    ):
        assert shown in page, shown


async def test_blind_review_hides_the_recommendation(
    sqlite_url: str, memory: MemoryAdapter, tmp_path: object
) -> None:
    async with running_inbox(sqlite_url, memory) as inbox:
        made = await inbox.api.submit()
        async with inbox.runtime.engine.begin() as conn:
            from bot.store.tables import cases

            await conn.execute(
                cases.update().where(cases.c.id == made["id"]).values(blind_review=True)
            )
        async with inbox.browser("carol@example.com") as client:
            page = (await client.get(f"/inbox/cases/{made['id']}")).text
            queue = (await client.get("/inbox/")).text
    assert "blind review" in page
    assert "82%" not in page
    assert "Within the per-head limit." not in page
    assert "blind review" in queue
    assert "82%" not in queue


async def test_workflow_strings_are_escaped(inbox: Inbox) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    made = await inbox.api.submit(
        case(title=evil, question=f"Q {evil}", facts={"who": evil}, summary=f'"{evil}')
    )
    async with inbox.browser("carol@example.com") as client:
        for path in ("/inbox/", f"/inbox/cases/{made['id']}", "/inbox/board"):
            page = (await client.get(path)).text
            assert "<script>alert" not in page, path
            assert "<img src=x" not in page, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        answer = await client.get(f"/inbox/cases/{made['id']}")
        assert "script-src 'self'" in answer.headers["content-security-policy"]


# -- deciding ------------------------------------------------------------------------


async def test_approve_needs_a_reason_code_and_then_counts_like_chat(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        token = csrf_of(page)
        refused = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": token, "action": "approve", "reason_code": "", "reason": "ok"},
        )
        assert refused.status_code == 422
        assert "Pick a reason code" in refused.text
        assert ">ok</textarea>" in refused.text  # what was typed is kept
        assert await rows(inbox, decisions) == []
        overriding = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": token, "action": "reject", "reason_code": "policy_violation"},
        )
        assert overriding.status_code == 422
        assert "overriding the AI" in overriding.text
        done = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": token, "action": "approve", "reason_code": "policy_match"},
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/inbox/cases/{made['id']}?done=approve"
        shown = (await client.get(done.headers["location"])).text
        assert "You approved this case." in shown
        assert "by web:carol@example.com (policy_match)" in shown
        again = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": token, "action": "reject", "reason_code": "other", "reason": "no"},
        )
        assert again.status_code == 409
        assert "already approved" in again.text.lower()
    kept = await rows(inbox, decisions)
    assert [(d["reviewer"], d["platform"], d["action"]) for d in kept] == [
        ("web:carol@example.com", "web", "approve")
    ]
    read = await inbox.api.get(f"/v1/escalations/{made['id']}")
    assert read.json()["status"] == "approved"
    # the chat card is updated as for a click in chat
    await asyncio.wait_for(_card_updated(inbox.memory, made["id"]), 10)
    assert "refused" in await kinds_of_events(inbox, made["id"])


async def _card_updated(memory: MemoryAdapter, case_id: str) -> None:
    while not any(
        card.case_id == case_id and card.outcome is not None for _, card in memory.of("update_card")
    ):
        memory.changed.clear()
        await memory.changed.wait()


async def test_a_non_approver_sees_why_and_is_refused(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("bob@example.com") as client:
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        assert "You are not an approver for the review lane" in page
        assert 'value="approve" class="approve" data-key="a" disabled' in page
        refused = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": csrf_of(page), "action": "approve", "reason_code": "policy_match"},
        )
        assert refused.status_code == 403
        assert "not an approver" in refused.text
    assert await rows(inbox, decisions) == []
    refusals = await rows(inbox, events, events.c.type == "refused")
    assert [r["actor"] for r in refusals] == ["web:bob@example.com"]


async def test_nobody_approves_their_own_request(inbox: Inbox) -> None:
    made = await inbox.api.submit()  # requested by dana@example.com, a reviewer
    async with inbox.browser("dana@example.com") as client:
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        assert "You requested this case, so you cannot approve it yourself." in page
        refused = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": csrf_of(page), "action": "approve", "reason_code": "policy_match"},
        )
        assert refused.status_code == 403
        assert "cannot approve it yourself" in refused.text
        assert await rows(inbox, decisions) == []
        rejected = await client.post(
            f"/inbox/cases/{made['id']}",
            data={
                "csrf": csrf_of(page),
                "action": "reject",
                "reason_code": "other",
                "reason": "I filed it by mistake",
            },
        )
        assert rejected.status_code == 303


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({}, {}),
        ({"csrf": "forged"}, {}),
        (None, {"Origin": "https://evil.example"}),
        (None, {"Referer": "https://evil.example/page"}),
    ],
    ids=["no-token", "wrong-token", "other-origin", "other-referer"],
)
async def test_a_post_without_this_sessions_token_changes_nothing(
    inbox: Inbox, form: dict[str, str] | None, headers: dict[str, str]
) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        data = {"csrf": csrf_of(page)} if form is None else form
        data.update(action="approve", reason_code="policy_match")
        refused = await client.post(f"/inbox/cases/{made['id']}", data=data, headers=headers)
        assert refused.status_code == 403
        assert "nothing was done" in refused.text
    assert await rows(inbox, decisions) == []
    assert "refused" not in await kinds_of_events(inbox, made["id"])


async def test_bad_forms_are_refused_and_change_nothing(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        token = csrf_of((await client.get(f"/inbox/cases/{made['id']}")).text)
        url = f"/inbox/cases/{made['id']}"
        unknown = await client.post(url, data={"csrf": token, "action": "explode"})
        assert unknown.status_code == 422
        assert "is not an action" in unknown.text
        no_proposal = await client.post(
            url, data={"csrf": token, "action": "modify", "reason_code": "other", "reason": "x"}
        )
        assert no_proposal.status_code == 422
        assert "not an action this case allows" in no_proposal.text
        files = await client.post(url, data={"csrf": token}, files={"f": ("a.txt", b"x")})
        assert files.status_code == 400
        many = await client.post(url, data={f"k{i}": "v" for i in range(100)})
        assert many.status_code == 400
        long = await client.post(
            url,
            data={"csrf": token, "action": "reject", "reason_code": "other", "reason": "x" * 5000},
        )
        assert long.status_code == 422
        assert "under 4000 characters" in long.text
        missing = await client.post("/inbox/cases/nope", data={"csrf": token, "action": "approve"})
        assert missing.status_code == 404
    assert await rows(inbox, decisions) == []


PROPOSAL = {
    "name": "issue_refund",
    "args": {"order": "A-1001", "amount": 420.0, "notify": True},
    "editable": ["amount", "notify"],
}


async def test_edit_approves_with_changes_and_bad_edits_change_nothing(inbox: Inbox) -> None:
    made = await inbox.api.submit(case(proposal=PROPOSAL, title="<b>refund</b>"))
    url = f"/inbox/cases/{made['id']}"
    async with inbox.browser("carol@example.com") as client:
        page = (await client.get(url)).text
        assert "Proposed: <code>issue_refund</code>" in page
        assert 'name="args.amount"' in page
        assert 'name="args.notify"' in page
        assert 'name="args.order"' not in page  # shown, not editable
        assert "<code>&#34;A-1001&#34;</code>" in page or "<code>&quot;A-1001&quot;</code>" in page
        assert 'value="modify" class="approve" data-key="e"' in page
        token = csrf_of(page)
        base = {"csrf": token, "action": "modify", "reason_code": "policy_match"}
        bad_json = await client.post(
            url, data={**base, "reason": "less", "args.amount": "four hundred"}
        )
        assert bad_json.status_code == 422
        assert "&#39;amount&#39; is not JSON" in bad_json.text
        assert "four hundred</textarea>" in bad_json.text  # what was typed is kept
        fixed = await client.post(url, data={**base, "reason": "x", "args.order": '"A-2"'})
        assert fixed.status_code == 422
        assert "may not be edited" in fixed.text
        unknown = await client.post(url, data={**base, "reason": "x", "args.to": '"me"'})
        assert unknown.status_code == 422
        assert "no argument" in unknown.text
        same = await client.post(
            url, data={**base, "reason": "x", "args.amount": "420.0", "args.notify": "true"}
        )
        assert same.status_code == 422
        assert "Nothing was changed" in same.text
        wordless = await client.post(url, data={**base, "args.amount": "380.5"})
        assert wordless.status_code == 422
        assert "changing what the AI proposed" in wordless.text
        assert await rows(inbox, decisions) == []
        done = await client.post(
            url,
            data={
                **base,
                "reason": "The receipt says 380.50",
                "args.amount": "380.5",
                "args.notify": "true",
            },
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{url}?done=modify"
        shown = (await client.get(done.headers["location"])).text
        assert "You approved this case with your changes." in shown
    [kept] = await rows(inbox, decisions)
    assert kept["action"] == "modify"
    read = (await inbox.api.get(f"/v1/escalations/{made['id']}")).json()
    assert read["status"] == "approved"
    assert read["decisions"][0]["args"] == {"order": "A-1001", "amount": 380.5, "notify": True}
    await asyncio.wait_for(_card_updated(inbox.memory, made["id"]), 10)


async def test_request_info_goes_to_the_workflow(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        token = csrf_of((await client.get(f"/inbox/cases/{made['id']}")).text)
        empty = await client.post(
            f"/inbox/cases/{made['id']}", data={"csrf": token, "action": "request_info"}
        )
        assert empty.status_code == 422
        asked = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": token, "action": "request_info", "reason": "Which project?"},
        )
        assert asked.status_code == 303
        page = (await client.get(asked.headers["location"])).text
        assert "Which project?" in page
        assert "info requested" in page
    assert (await inbox.api.get(f"/v1/escalations/{made['id']}")).json()["status"] == (
        "info_requested"
    )


async def test_a_decision_in_chat_shows_on_the_web(inbox: Inbox) -> None:
    made = await inbox.api.submit()
    async with inbox.browser("carol@example.com") as client:
        before = (await client.get(f"/inbox/cases/{made['id']}/live")).json()["version"]
        queued = (await client.get("/inbox/live")).json()["version"]
        await inbox.runtime.service.decide(
            made["id"], Reviewer("memory", "U0ALICE"), "approve", "policy_match"
        )
        assert (await client.get(f"/inbox/cases/{made['id']}/live")).json()["version"] != before
        assert (await client.get("/inbox/live")).json()["version"] != queued
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        assert "by memory:U0ALICE (policy_match)" in page
        assert 'id="decide"' not in page
        history = (await client.get("/inbox/history")).text
        assert "memory:U0ALICE" in history
        assert "Expense ER-1" in history
        assert "Expense ER-1" not in (await client.get("/inbox/")).text


async def test_the_report_page_has_the_charts_for_managers(inbox: Inbox) -> None:
    async with inbox.browser("mona@example.com") as client:
        page = await client.get("/inbox/report", params={"week": "2026-W48"})
        assert page.status_code == 200
        assert page.text.count("data:image/png;base64,") == 2
        assert "Weekly report <small>2026-W48</small>" in page.text
        bad = await client.get("/inbox/report", params={"week": "soon"})
        assert bad.status_code == 400
    async with inbox.browser("carol@example.com") as client:
        refused = await client.get("/inbox/report")
        assert refused.status_code == 403
        assert "managers" in refused.text


# -- setup ---------------------------------------------------------------------------


async def test_the_first_start_prints_a_link_for_the_first_web_approver(
    sqlite_url: str, memory: MemoryAdapter, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_inbox(sqlite_url, memory) as inbox:
        printed = capsys.readouterr().err
        assert "Sign in as alice@example.com (the first web approver" in printed
        token = printed.split("token=", 1)[1].split()[0]
        async with inbox.browser(None) as client:
            assert (await client.post("/inbox/login", data={"token": token})).status_code == 303
        await inbox.web.start(inbox.runtime.service)  # someone has signed in: no new link
        assert "token=" not in capsys.readouterr().err


def test_web_approvers_and_groups_are_checked() -> None:
    import yaml

    shipped = yaml.safe_load(WEB_POLICY.read_text())
    bad_entry = {**shipped, "lanes": {**shipped["lanes"]}}
    bad_entry["lanes"]["review"] = {**shipped["lanes"]["review"], "approvers": {"web": ["Bob"]}}
    with pytest.raises(ValueError, match="must be a lower-case e-mail address or group"):
        Policy.model_validate(bad_entry)
    no_group = {**shipped, "groups": {"experts": ["eve@example.com"]}}
    with pytest.raises(ValueError, match="'group:reviewers', which the top-level `groups:`"):
        Policy.model_validate(no_group)
    nested = {**shipped, "groups": {**shipped["groups"], "all": ["group:experts"]}}
    with pytest.raises(ValueError, match="groups hold e-mail addresses"):
        Policy.model_validate(nested)


def test_login_link_command(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from bot.cli import main

    where = Path(str(tmp_path))
    monkeypatch.chdir(where)
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", f"sqlite:///{where / 'links.db'}")
    monkeypatch.setenv("SIGNOFF_POLICY", str(WEB_POLICY))
    runner = CliRunner()
    made = runner.invoke(main, ["web", "login-link", "carol@example.com"])
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("http://127.0.0.1:8080/inbox/login?token=")
    assert "good for 15 minutes, once" in made.stderr
    stranger = runner.invoke(main, ["web", "login-link", "zed@example.com"])
    assert stranger.exit_code == 0
    assert "no web approver of any lane" in stranger.stderr
    bad = runner.invoke(main, ["web", "login-link", "not an address"])
    assert bad.exit_code == 2
    assert "is not an e-mail address" in bad.stderr
