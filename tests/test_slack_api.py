"""The fake Slack Web API answers the real slack_sdk AsyncWebClient the way Slack does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from tests.blockkit import check_message, check_view
from tests.slack_api import Call, SlackApi, slack_api

USERS = {"U0DANA": {"name": "dana", "email": "dana@example.com", "real_name": "Dana D"}}
GROUPS = {"S0REVIEW": ["U0CAROL", "U0DAVE"]}


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id: str, text: str = "Approve", **extra: Any) -> dict[str, Any]:
    label = {"type": "plain_text", "text": text}
    return {"type": "button", "action_id": action_id, "text": label, **extra}


@pytest.fixture
async def api() -> AsyncIterator[SlackApi]:
    async with slack_api(users=USERS, groups=GROUPS) as server:
        yield server


@pytest.fixture
def client(api: SlackApi) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=api.url, retry_handlers=[])


async def test_post_then_update_a_message_with_blocks(
    api: SlackApi, client: AsyncWebClient
) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Expense ER-1"}},
        section("Approve this expense?", block_id="question"),
        {"type": "actions", "elements": [button("approve", style="primary"), button("reject")]},
    ]
    posted = await client.chat_postMessage(channel="C0REVIEW", text="Expense ER-1", blocks=blocks)
    assert posted["ok"]
    assert posted["channel"] == "C0REVIEW"
    assert posted["ts"] == "1700000000.000100"
    assert posted["message"]["blocks"] == blocks

    updated = await client.chat_update(
        channel="C0REVIEW", ts=posted["ts"], text="Approved", blocks=[section("Approved by Carol")]
    )
    assert updated["ts"] == posted["ts"]
    message = api.message("C0REVIEW", posted["ts"])
    assert message is not None
    assert message.edits == 1
    assert message.text == "Approved"
    assert message.blocks == [section("Approved by Carol")]

    call = api.of("chat.postMessage")[0]
    assert call.params["blocks"] == blocks  # decoded to Python objects
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.headers["content-type"].startswith("application/json")
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C0REVIEW", ts="1.000000", text="x")
    assert missing.value.response["error"] == "message_not_found"
    assert api.violations == []


async def test_thread_replies_and_ephemeral_messages(api: SlackApi, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="Case opened")
    first = await client.chat_postMessage(channel="C1", text="Reminder", thread_ts=parent["ts"])
    await client.chat_postMessage(
        channel="C1", text="Escalated", thread_ts=parent["ts"], reply_broadcast=True
    )
    assert first["ts"] > parent["ts"]
    replies = api.thread("C1", parent["ts"])
    assert [(m.text, m.reply_broadcast) for m in replies] == [
        ("Reminder", False),
        ("Escalated", True),
    ]
    shown = await client.chat_postEphemeral(channel="C1", user="U0DANA", text="Only you")
    assert api.messages["C1"][-1].user == "U0DANA"
    assert api.messages["C1"][-1].ts == shown["message_ts"]
    link = await client.chat_getPermalink(channel="C1", message_ts=parent["ts"])
    assert link["permalink"] == "https://example.slack.com/archives/C1/p1700000000000100"


async def test_51_blocks_are_refused_and_recorded(api: SlackApi, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C1", text="many", blocks=[{"type": "divider"}] * 51)
    assert refused.value.response.status_code == 200
    assert refused.value.response["error"] == "invalid_blocks"
    assert refused.value.response["errors"] == ["blocks: must have 0 to 50 items, got 51"]
    assert api.violations == ["chat.postMessage: blocks: must have 0 to 50 items, got 51"]
    assert api.messages["C1"] == []


async def test_a_151_character_header_is_refused(api: SlackApi, client: AsyncWebClient) -> None:
    header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C1", text="t", blocks=[header])
    assert refused.value.response["errors"] == [
        "blocks[0].text.text: must be at most 150 characters, got 151"
    ]
    assert len(api.violations) == 1


def test_block_kit_checks_catch_common_mistakes() -> None:
    def long(n: int) -> str:
        return "x" * n

    bad = [
        {"type": "sectoin", "text": {"type": "mrkdwn", "text": "typo"}},
        section("", block_id="b"),
        section("ok", block_id="b"),
        {"type": "header", "text": {"type": "mrkdwn", "text": "not plain"}},
        section("f", fields=[{"type": "mrkdwn", "text": "f"}] * 11),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11},
        {"type": "actions", "elements": [button("a", value=long(2001)), button("a")]},
        {"type": "actions", "elements": [button("b", text=long(76))]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": "pick",
                    "options": [{"text": {"type": "plain_text", "text": "o"}, "value": long(151)}],
                    "initial_option": {"text": {"type": "plain_text", "text": "z"}, "value": "z"},
                    "confirm": {
                        "title": {"type": "plain_text", "text": long(101)},
                        "text": {"type": "plain_text", "text": "sure?"},
                        "confirm": {"type": "plain_text", "text": "Yes"},
                        "deny": {"type": "plain_text", "text": "No"},
                    },
                }
            ],
        },
    ]
    assert check_message({"text": "t", "blocks": bad}) == [
        "blocks[0].type: unknown block type 'sectoin'",
        "blocks[1].text.text: must be a non-empty string",
        "blocks[2].block_id: duplicate 'b'",
        "blocks[3].text.type: must be plain_text",
        "blocks[4].fields: must have 0 to 10 items, got 11",
        "blocks[5].elements: must have 1 to 10 items, got 11",
        "blocks[6].elements[0].value: must be at most 2000 characters, got 2001",
        "blocks[6].elements[1].action_id: duplicate 'a'",
        "blocks[7].elements[0].text.text: must be at most 75 characters, got 76",
        "blocks[8].elements[0].confirm.title.text: must be at most 100 characters, got 101",
        "blocks[8].elements[0].options[0].value: must be at most 75 characters, got 151",
        "blocks[8].elements[0].initial_option: must be one of the element's options",
    ]
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": long(25)},
        "private_metadata": long(3001),
        "blocks": [
            {
                "type": "input",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "why",
                    "placeholder": {"type": "plain_text", "text": long(151)},
                },
            }
        ],
    }
    assert check_view(modal) == [
        "view.private_metadata: must be at most 3000 characters, got 3001",
        "view.title.text: must be at most 24 characters, got 25",
        "view.submit: is required when the view has input blocks",
        "view.blocks[0].element.placeholder.text: must be at most 150 characters, got 151",
    ]
    assert check_view({**modal, "blocks": [{"type": "divider"}] * 101})[-1] == (
        "view.blocks: must have 0 to 100 items, got 101"
    )


async def test_views_open_and_update(api: SlackApi, client: AsyncWebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "reject",
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [section("Why?")],
    }
    opened = await client.views_open(trigger_id="123.456", view=view)
    view_id = opened["view"]["id"]
    assert opened["view"]["callback_id"] == "reject"
    updated = await client.views_update(view_id=view_id, view={**view, "blocks": []})
    assert updated["view"]["id"] == view_id
    assert api.views[view_id]["blocks"] == []
    with pytest.raises(SlackApiError) as refused:
        await client.views_open(trigger_id="1", view={**view, "title": {"type": "mrkdwn"}})
    assert refused.value.response["error"] == "invalid_arguments"
    assert api.violations == [
        "views.open: view.title.type: must be plain_text",
        "views.open: view.title.text: must be a non-empty string",
    ]


async def test_429_answers_with_retry_after(api: SlackApi, client: AsyncWebClient) -> None:
    api.fail("chat.postMessage", status=429, times=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            await client.chat_postMessage(channel="C1", text="hi")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "7"
        assert limited.value.response["error"] == "ratelimited"
    await client.chat_postMessage(channel="C1", text="hi")
    assert len(api.rejected) == 2
    assert len(api.of("chat.postMessage")) == 1
    assert [m.text for m in api.messages["C1"]] == ["hi"]


async def test_outage_then_recovery(api: SlackApi, client: AsyncWebClient) -> None:
    seen: list[Call] = []
    api.on_call.append(seen.append)
    api.outage(True)
    with pytest.raises(SlackApiError) as down:
        await client.chat_postMessage(channel="C1", text="hi")
    assert down.value.response.status_code == 503
    with pytest.raises(SlackApiError):
        await client.auth_test()
    api.outage(False)
    assert (await client.auth_test())["user_id"] == "U0BOT"
    assert [(c.method, c.status) for c in seen] == [
        ("chat.postMessage", 503),
        ("auth.test", 503),
        ("auth.test", 200),
    ]
    assert api.messages["C1"] == []
    assert len(api.rejected) == 2


async def test_5xx_injection_answers_html(api: SlackApi) -> None:
    api.fail("*", status=502)
    async with aiohttp.ClientSession() as session:
        url = api.url + "auth.test"
        headers = {"Authorization": "Bearer xoxb-test"}
        async with session.post(url, headers=headers) as first:
            assert first.status == 502
            assert first.content_type == "text/html"
            assert await first.text() == "upstream error"
        async with session.post(url, headers=headers) as second:
            assert second.content_type == "application/json"
            assert (await second.json())["team_id"] == "T0TEAM"


async def test_form_encoded_blocks_are_decoded(api: SlackApi) -> None:
    blocks = [section("from a form")]
    form = {"channel": "C1", "text": "t", "blocks": json.dumps(blocks)}
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer xoxb-test"}
        async with session.post(api.url + "chat.postMessage", data=form, headers=headers) as r:
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert (await r.json())["ok"] is True
        async with session.post(api.url + "nope.nope", headers=headers) as r:
            assert (await r.json()) == {"ok": False, "error": "unknown_method"}
    assert api.messages["C1"][0].blocks == blocks


async def test_bad_token_is_refused(api: SlackApi) -> None:
    for token, error in (("xoxp-user", "invalid_auth"), (None, "not_authed")):
        client = AsyncWebClient(token=token, base_url=api.url, retry_handlers=[])
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel="C1", text="hi")
        assert refused.value.response.status_code == 200
        assert refused.value.response["error"] == error
    assert api.messages["C1"] == []
    assert api.violations == []


async def test_directory_lookups(api: SlackApi, client: AsyncWebClient) -> None:
    members = await client.usergroups_users_list(usergroup="S0REVIEW")
    assert members["users"] == ["U0CAROL", "U0DAVE"]
    info = await client.users_info(user="U0DANA")
    assert info["user"]["name"] == "dana"
    assert info["user"]["profile"]["email"] == "dana@example.com"
    assert info["user"]["profile"]["real_name"] == "Dana D"
    dm = await client.conversations_open(users=["U0DANA"])
    assert dm["channel"]["id"] == "DU0DANA"
    for call, error in (
        (client.usergroups_users_list(usergroup="S0NOPE"), "no_such_subteam"),
        (client.users_info(user="U0NOPE"), "user_not_found"),
    ):
        with pytest.raises(SlackApiError) as missing:
            await call
        assert missing.value.response["error"] == error
    assert api.of("users.info")[0].params == {"user": "U0DANA"}  # None values are dropped


async def test_wait_for_reports_what_arrived(api: SlackApi, client: AsyncWebClient) -> None:
    await client.auth_test()
    await api.wait_for(lambda a: len(a.calls) == 1)
    with pytest.raises(AssertionError, match=r"calls: \[auth.test:True\]"):
        await api.wait_for(lambda a: a.messages["C1"], timeout=0.05)


async def test_files_upload_v2_shares_the_files_in_the_channel(
    api: SlackApi, client: AsyncWebClient
) -> None:
    chart, notes = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, b"plain\r\nnotes"
    done = await client.files_upload_v2(
        file_uploads=[
            {"filename": "chart.png", "content": chart, "title": "Overrides"},
            {"filename": "notes.txt", "content": notes},
        ],
        channel="C0MANAGERS",
        initial_comment="This week",
    )
    assert done["ok"]
    assert [f["title"] for f in done["files"]] == ["Overrides", "notes.txt"]
    assert [(f.filename, f.title, f.channel, f.data) for f in api.files] == [
        ("chart.png", "Overrides", "C0MANAGERS", chart),
        ("notes.txt", "notes.txt", "C0MANAGERS", notes),
    ]
    assert api.files[0].initial_comment == "This week"
    assert api.files_in("C0MANAGERS") == api.files
    assert [c.method for c in api.calls] == [
        "files.getUploadURLExternal",
        "files.getUploadURLExternal",
        "upload",
        "upload",
        "files.completeUploadExternal",
    ]
    asked = api.of("files.getUploadURLExternal")[0]
    assert (asked.params["filename"], asked.params["length"]) == ("chart.png", str(len(chart)))
    assert asked.response is not None
    assert asked.response["upload_url"] == api.url.removesuffix("api/") + "upload/F0000000001"
    assert [c.params for c in api.of("upload")] == [
        {"file_id": "F0000000001", "length": len(chart)},
        {"file_id": "F0000000002", "length": len(notes)},
    ]
    assert "authorization" not in api.of("upload")[0].headers  # the URL is the credential
    assert api.uploads == {}
    assert api.violations == []


async def test_a_multipart_upload_is_read_as_the_file_part(api: SlackApi) -> None:
    headers = {"Authorization": "Bearer xoxb-test"}
    data = b"\x00\x01binary\r\n--not-a-boundary\r\n\xff"
    async with aiohttp.ClientSession() as session:
        form = {"filename": "raw.bin", "length": str(len(data))}
        async with session.post(
            api.url + "files.getUploadURLExternal", data=form, headers=headers
        ) as r:
            started = await r.json()
        multipart = aiohttp.FormData()
        multipart.add_field("filename", "raw.bin")
        multipart.add_field("file", data, filename="raw.bin")
        async with session.post(started["upload_url"], data=multipart) as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            assert await r.text() == f"OK - {len(data)}"
        async with session.post(started["upload_url"], data=data) as again:
            assert again.status == 404  # an upload URL takes one upload
    client = AsyncWebClient(token="xoxb-test", base_url=api.url, retry_handlers=[])
    await client.files_completeUploadExternal(
        files=[{"id": started["file_id"], "title": "Raw"}], channel_id="C1"
    )
    assert [(f.title, f.data) for f in api.files_in("C1")] == [("Raw", data)]


async def test_a_completion_needs_every_file_uploaded_in_full(
    api: SlackApi, client: AsyncWebClient
) -> None:
    started = await client.files_getUploadURLExternal(filename="a.png", length=10)
    with pytest.raises(SlackApiError) as unknown:
        await client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id="C1")
    assert unknown.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as not_uploaded:
        await client.files_completeUploadExternal(
            files=[{"id": started["file_id"]}], channel_id="C1"
        )
    assert not_uploaded.value.response["error"] == "invalid_arguments"
    async with (
        aiohttp.ClientSession() as session,
        session.post(started["upload_url"], data=b"short") as r,
    ):
        assert await r.text() == "OK - 5"  # the upload URL does not check the length
    with pytest.raises(SlackApiError) as short:
        await client.files_completeUploadExternal(
            files=[{"id": started["file_id"]}], channel_id="C1"
        )
    assert short.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as no_name:
        await client.api_call("files.getUploadURLExternal", params={"length": 3})
    assert no_name.value.response["error"] == "invalid_arguments"
    assert api.files == []
    assert len(api.violations) == 4


async def test_file_uploads_fail_on_demand(api: SlackApi, client: AsyncWebClient) -> None:
    api.fail("files.getUploadURLExternal", status=429, retry_after=3)
    with pytest.raises(SlackApiError) as limited:
        await client.files_upload_v2(filename="a.png", content=b"abc", channel="C1")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    api.fail("upload", status=503)
    with pytest.raises(SlackClientError, match=r"status: 503"):
        await client.files_upload_v2(filename="a.png", content=b"abc", channel="C1")
    api.fail("files.completeUploadExternal", status=500)
    with pytest.raises(SlackApiError) as broken:
        await client.files_upload_v2(filename="a.png", content=b"abc", channel="C1")
    assert broken.value.response.status_code == 500
    assert [(c.method, c.status) for c in api.rejected] == [
        ("files.getUploadURLExternal", 429),
        ("upload", 503),
        ("files.completeUploadExternal", 500),
    ]
    assert api.files == []
    done = await client.files_upload_v2(filename="a.png", content=b"abc", channel="C1")
    assert done["file"]["title"] == "a.png"
    assert [f.data for f in api.files_in("C1")] == [b"abc"]
