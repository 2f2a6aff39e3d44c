"""The `signoff` command line: help, policy check/explain, db upgrade, send, serve."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from tests.conftest import SECRET, MakeRuntime, free_port, http_server, signed

HERE = Path(__file__).parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
DESIGN_EXAMPLE = HERE / "policies" / "design_example.yaml"
CLI = [sys.executable, "-c", "from bot.cli import main; main()"]
TABLES = {"alembic_version", "cases", "decisions", "events", "outbox", "timers"}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SIGNOFF_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SIGNOFF_* from the developer's environment, and a cwd without a `.env`."""
    for name in list(os.environ):
        if name.startswith("SIGNOFF_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def invoke(args: list[str], **env: str) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False, prog_name="signoff")


# --- --help ----------------------------------------------------------------------------


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


ALL_COMMANDS = sorted(command_paths(main))


def test_the_commands_of_the_design_exist() -> None:
    assert {
        ("serve",),
        ("send",),
        ("policy",),
        ("policy", "check"),
        ("policy", "explain"),
        ("db",),
        ("db", "upgrade"),
    } <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", [(), *ALL_COMMANDS], ids=lambda p: " ".join(p) or "signoff")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(path: tuple[str, ...], flag: str) -> None:
    result = invoke([*path, flag])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: signoff {' '.join(path)}".rstrip())
    assert result.stderr == ""


def test_help_lists_the_subcommands() -> None:
    result = invoke(["--help"])
    for name in ("serve", "send", "policy", "db"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), name


def test_version() -> None:
    from bot import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"signoff, version {__version__}"


def test_unknown_command_is_an_error() -> None:
    result = invoke(["nope"])
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_console_script() -> None:
    # The installed `signoff` entry point (pyproject's [project.scripts]).
    script = Path(sys.executable).with_name("signoff")
    if not script.is_file():
        pytest.skip("the `signoff` console script is not installed next to this Python")
    done = subprocess.run(  # noqa: S603
        [str(script), "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: signoff" in done.stdout


# --- policy check ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, DESIGN_EXAMPLE])
def test_policy_check_ok(policy: Path) -> None:
    result = invoke(["policy", "check", str(policy)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{policy}: ok (version ")
    assert re.search(r"version [0-9a-f]{16}\)", result.stdout)
    assert "lanes review, expert, stop_the_line" in result.stdout
    assert result.stderr == ""


def test_policy_check_broken_file(isolated: Path) -> None:
    text = DESIGN_EXAMPLE.read_text()
    text = text.replace("sla: 4h ", "sla: 4 hours ").replace("quorum: 2", "quorum: 0")
    text = text.replace("    lane: review\n  - lane: auto", "    lane: reveiw\n  - lane: auto")
    broken = isolated / "broken.yaml"
    broken.write_text(text)
    result = invoke(["policy", "check", str(broken)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        f"{broken}:4: lanes.review.sla: '4 hours' is not a duration: "
        "write it like 90s, 15m, 4h or 2d",
        f"{broken}:21: lanes.stop_the_line.quorum: must be at least 1 (got 0)",
    ]
    # Fix those two: the cross-field problem comes next, with its own line and field.
    broken.write_text(text.replace("4 hours", "4h").replace("quorum: 0", "quorum: 2"))
    result = invoke(["policy", "check", str(broken)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{broken}:36: rules[4].lane: rule 5 sends cases to lane ")
    for line in result.stderr.splitlines():
        assert re.fullmatch(rf"{re.escape(str(broken))}:\d+: [\w.\[\]]+: .+", line), line


def test_policy_check_yaml_syntax_error(isolated: Path) -> None:
    broken = isolated / "syntax.yaml"
    broken.write_text("lanes:\n  review: {approvers: [}\n")
    result = invoke(["policy", "check", str(broken)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{broken}:2: ")


def test_policy_check_missing_file(isolated: Path) -> None:
    missing = isolated / "nope.yaml"
    result = invoke(["policy", "check", str(missing)])
    assert result.exit_code != 0
    assert result.stdout == ""
    assert str(missing) in result.stderr
    assert "cannot read the policy file" in result.stderr
    assert "No such file or directory" in result.stderr


def test_policy_check_directory_is_refused(isolated: Path) -> None:
    result = invoke(["policy", "check", str(isolated)])
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


# --- policy explain --------------------------------------------------------------------


def test_policy_explain_shipped_policy() -> None:
    result = invoke(["policy", "explain", str(EXAMPLES / "refund.json")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "lane: review"
    assert lines[1] == "rule: large refund (rule 5 of 8)"
    assert lines[2].startswith("  no    stop the line -> stop_the_line: ")
    assert "none of the flags" in lines[2]
    assert "low confidence -> expert: confidence 0.91 is not below 0.70" in lines[3]
    assert lines[-1] == (
        "  MATCH large refund -> review: kind 'refund' is in ['refund']; "
        "amount 1240.0 is at least 500"
    )
    assert len(lines) == 2 + 5


@pytest.mark.parametrize(
    ("file", "lane", "rule"),
    [
        ("agent_email.json", "stop_the_line", "stop the line (rule 1 of 8)"),
        ("expense.json", "expert", "large expense (rule 4 of 8)"),
        ("moderation.json", "expert", "low confidence (rule 2 of 8)"),
    ],
)
def test_policy_explain_examples(file: str, lane: str, rule: str) -> None:
    result = invoke(["policy", "explain", str(EXAMPLES / file)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [f"lane: {lane}", f"rule: {rule}"]


def test_policy_explain_with_another_policy() -> None:
    by_option = invoke(
        ["policy", "explain", "--policy", str(DESIGN_EXAMPLE), str(EXAMPLES / "refund.json")]
    )
    by_env = invoke(
        ["policy", "explain", str(EXAMPLES / "refund.json")], SIGNOFF_POLICY=str(DESIGN_EXAMPLE)
    )
    for result in (by_option, by_env):
        assert result.exit_code == 0, result.output
        # Confidence 0.91 and not reversible: rule 5 of the DESIGN.md example.
        assert result.stdout.splitlines()[:2] == ["lane: review", "rule: rule 5 (rule 5 of 6)"]
        assert "MATCH rule 5 -> review: reversible is False, the rule asks for False" in (
            result.stdout
        )


def test_policy_explain_reads_dotenv(isolated: Path) -> None:
    (isolated / ".env").write_text(f"SIGNOFF_POLICY={DESIGN_EXAMPLE}\n")
    result = invoke(["policy", "explain", str(EXAMPLES / "refund.json")])
    assert result.exit_code == 0, result.output
    assert "rule: rule 5 (rule 5 of 6)" in result.stdout


def test_policy_explain_invalid_case(isolated: Path) -> None:
    body = json.loads((EXAMPLES / "refund.json").read_text())
    body["recommendation"]["confidence"] = 1.5
    body["kind"] = "Refund!"
    body["surprise"] = True
    bad = isolated / "bad.json"
    bad.write_text(json.dumps(body))
    result = invoke(["policy", "explain", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert (
        f"{bad}: kind: must be 1 to 64 lower-case letters, digits or _ . -, starting with a "
        "letter or digit (got 'Refund!')"
    ) in lines
    assert f"{bad}: recommendation.confidence: must be at most 1 (got 1.5)" in lines
    assert (
        f"{bad}: surprise: unknown field; the fields here are source, kind, title, question, "
        "summary, recommendation, risk, flags, facts, evidence, policy_refs, history, actions, "
        "requested_by, callback_url, sla, metadata, idempotency_key, proposal"
    ) in lines
    assert len(lines) == 3


def test_policy_explain_not_json(isolated: Path) -> None:
    bad = isolated / "bad.json"
    bad.write_text("kind: refund\n")
    result = invoke(["policy", "explain", str(bad)])
    assert result.exit_code == 1
    assert result.stderr == f"{bad}: not JSON: expected value at line 1 column 1\n"


def test_policy_explain_missing_case_file(isolated: Path) -> None:
    result = invoke(["policy", "explain", str(isolated / "nope.json")])
    assert result.exit_code == 2
    assert "nope.json: No such file or directory" in result.stderr


def test_policy_explain_broken_policy(isolated: Path) -> None:
    broken = isolated / "broken.yaml"
    broken.write_text(DESIGN_EXAMPLE.read_text().replace("quorum: 2", "quorum: 0"))
    result = invoke(["policy", "explain", "--policy", str(broken), str(EXAMPLES / "refund.json")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{broken}:21: lanes.stop_the_line.quorum: ")


# --- db upgrade ------------------------------------------------------------------------


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {name for (name,) in rows}


def test_db_upgrade_fresh_then_up_to_date(isolated: Path) -> None:
    path = isolated / "fresh.db"
    url = f"sqlite:///{path}"
    first = invoke(["db", "upgrade"], SIGNOFF_DATABASE_URL=url)
    assert first.exit_code == 0, first.output
    match = re.fullmatch(r"database upgraded from empty to (\w+)\n", first.stdout)
    assert match, first.stdout
    head = match.group(1)
    assert tables(path) >= TABLES
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    conn.close()
    second = invoke(["db", "upgrade"], SIGNOFF_DATABASE_URL=url)
    assert second.exit_code == 0, second.output
    assert second.stdout == f"database is up to date (revision {head})\n"


def test_db_upgrade_default_url_is_a_file_in_the_cwd(isolated: Path) -> None:
    result = invoke(["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert tables(isolated / "signoff.db") >= TABLES


def test_db_upgrade_url_from_dotenv(isolated: Path) -> None:
    (isolated / ".env").write_text("SIGNOFF_DATABASE_URL=sqlite:///from-dotenv.db\n")
    result = invoke(["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert tables(isolated / "from-dotenv.db") >= TABLES
    assert not (isolated / "signoff.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", "'mysql' is not supported; use sqlite:///FILE or postgresql://"),
        ("not a url", "SIGNOFF_DATABASE_URL is not a database URL"),
    ],
)
def test_db_upgrade_bad_url(url: str, message: str) -> None:
    result = invoke(["db", "upgrade"], SIGNOFF_DATABASE_URL=url)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("signoff: ")
    assert message in result.stderr


def test_bad_settings_exit_2() -> None:
    result = invoke(["db", "upgrade"], SIGNOFF_PORT="eighty")
    assert result.exit_code == 2
    assert result.stderr == "signoff: bad settings: SIGNOFF_PORT: must be a whole number\n"
    assert "eighty" not in result.stderr  # settings are never quoted back: some are secrets


# --- send ------------------------------------------------------------------------------


async def run_cli(*args: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run `signoff ARGS` in a subprocess, leaving this event loop free to serve."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        cwd=cwd,
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def read_case(base: str, case_id: str, secret: str = SECRET) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await client.get(
            f"/v1/escalations/{case_id}",
            headers=signed(b"", secret, method="GET", target=f"/v1/escalations/{case_id}"),
        )


async def test_send_submits_a_case(
    make_runtime: MakeRuntime, sqlite_url: str, isolated: Path
) -> None:
    runtime = await make_runtime(sqlite_url)
    async with http_server(runtime) as base:
        code, out, err = await run_cli(
            "send",
            "--url",
            base,
            str(EXAMPLES / "refund.json"),
            cwd=isolated,
            SIGNOFF_WEBHOOK_SECRET=SECRET,
        )
        assert code == 0, err
        answer = json.loads(out)
        assert set(answer) >= {"id", "status", "lane", "due_at"}
        assert answer["lane"] == "review"
        assert answer["status"] == "pending"
        got = await read_case(base, answer["id"])
    assert got.status_code == 200, got.text
    case = got.json()
    assert case["id"] == answer["id"]
    assert case["status"] == "pending"
    assert case["kind"] == "refund"
    assert case["title"] == "Refund $1,240.00 to order #A-20931"
    assert case["case"]["risk"]["amount"] == 1240.0


async def test_send_with_idempotency_key_replays(
    make_runtime: MakeRuntime, sqlite_url: str, isolated: Path
) -> None:
    runtime = await make_runtime(sqlite_url)
    args = ["send", "--idempotency-key", "k-1", str(EXAMPLES / "expense.json")]
    async with http_server(runtime) as base:
        first = await run_cli(*args, "--url", base, cwd=isolated, SIGNOFF_WEBHOOK_SECRET=SECRET)
        second = await run_cli(*args, "--url", base, cwd=isolated, SIGNOFF_WEBHOOK_SECRET=SECRET)
    assert first[0] == 0, first[2]
    assert second[0] == 0, second[2]
    assert json.loads(first[1])["id"] == json.loads(second[1])["id"]
    assert json.loads(first[1])["lane"] == "expert"


async def test_send_uses_the_kept_secret_file(
    make_runtime: MakeRuntime, sqlite_url: str, isolated: Path
) -> None:
    (isolated / ".signoff-webhook-secret").write_text(SECRET + "\n")
    runtime = await make_runtime(sqlite_url)
    async with http_server(runtime) as base:
        code, out, err = await run_cli(
            "send", "--url", base, str(EXAMPLES / "moderation.json"), cwd=isolated
        )
    assert code == 0, err
    assert json.loads(out)["lane"] == "expert"


async def test_send_with_a_wrong_secret(
    make_runtime: MakeRuntime, sqlite_url: str, isolated: Path
) -> None:
    runtime = await make_runtime(sqlite_url)
    async with http_server(runtime) as base:
        code, out, err = await run_cli(
            "send",
            "--url",
            base,
            str(EXAMPLES / "refund.json"),
            cwd=isolated,
            SIGNOFF_WEBHOOK_SECRET="not-the-secret",
        )
    assert code == 1
    assert json.loads(out)["error"] == "unauthorized"
    assert err.startswith("signoff: HTTP 401: X-Signoff-Signature does not match")
    async with runtime.engine.connect() as conn:
        from sqlalchemy import text

        count = (await conn.execute(text("SELECT count(*) FROM cases"))).scalar_one()
    assert count == 0


async def test_send_an_invalid_case_prints_the_422(
    make_runtime: MakeRuntime, sqlite_url: str, isolated: Path
) -> None:
    bad = isolated / "bad.json"
    bad.write_text(json.dumps({"kind": "refund"}))
    runtime = await make_runtime(sqlite_url)
    async with http_server(runtime) as base:
        code, out, err = await run_cli(
            "send", "--url", base, str(bad), cwd=isolated, SIGNOFF_WEBHOOK_SECRET=SECRET
        )
    assert code == 1
    assert "title" in out
    assert err.startswith("signoff: HTTP 422")


async def test_send_to_nothing_listening(isolated: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = await run_cli(
        "send",
        "--url",
        url,
        str(EXAMPLES / "refund.json"),
        cwd=isolated,
        SIGNOFF_WEBHOOK_SECRET=SECRET,
    )
    assert code == 3
    assert err.startswith(f"signoff: cannot reach {url}")


def test_send_missing_file(isolated: Path) -> None:
    result = invoke(["send", str(isolated / "nope.json")], SIGNOFF_WEBHOOK_SECRET=SECRET)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"signoff: {isolated / 'nope.json'}: No such file or directory\n"


def test_send_not_json(isolated: Path) -> None:
    bad = isolated / "case.json"
    bad.write_text("{kind: refund")
    result = invoke(["send", str(bad)], SIGNOFF_WEBHOOK_SECRET=SECRET)
    assert result.exit_code == 1  # the case was read and refused, as `policy explain` says
    assert result.stdout == ""
    assert result.stderr.startswith(f"signoff: {bad}: not JSON: ")


def test_send_without_any_secret() -> None:
    result = invoke(["send", str(EXAMPLES / "refund.json")])
    assert result.exit_code == 2
    assert "no secret for source 'default'" in result.stderr
    assert "SIGNOFF_WEBHOOK_SECRET" in result.stderr


def test_send_unknown_source() -> None:
    result = invoke(
        ["send", "--source", "billing", str(EXAMPLES / "refund.json")],
        SIGNOFF_WEBHOOK_SECRET=SECRET,
    )
    assert result.exit_code == 2
    assert "SIGNOFF_SOURCES__BILLING__SECRET" in result.stderr


# --- serve -----------------------------------------------------------------------------


@contextmanager
def serving(cwd: Path, database: Path, **env: str) -> Iterator[tuple[str, list[str]]]:
    """`signoff serve` in a subprocess on a free port; yields its URL and, once it has
    stopped, its stderr (as the list's only item). The process is always ended."""
    port = free_port()
    log = cwd.parent / f"serve-{port}.log"
    captured: list[str] = []
    with log.open("wb") as sink:
        proc = subprocess.Popen(  # noqa: S603
            [*CLI, "serve", "--port", str(port)],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env(SIGNOFF_DATABASE_URL=f"sqlite:///{database}", **env),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(proc, base, log)
            yield base, captured
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    captured.append(log.read_text())


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"signoff serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"signoff serve did not become healthy:\n{log.read_text()}")


def submit(base: str, secret: str, body: bytes | None = None) -> httpx.Response:
    raw = body or (EXAMPLES / "refund.json").read_bytes()
    url = f"{base}/v1/escalations"
    return httpx.post(url, content=raw, headers=signed(raw, secret), timeout=30)


def test_serve_makes_keeps_and_reuses_a_secret(isolated: Path) -> None:
    secret_file = isolated / ".signoff-webhook-secret"
    database = isolated.parent / "serve.db"
    assert not secret_file.exists()
    with serving(isolated, database) as (base, log):
        assert secret_file.is_file()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        assert len(secret) >= 32
        health = httpx.get(f"{base}/healthz", timeout=5).json()
        assert health["status"] == "ok"
        # The server takes requests signed with that secret, and no others.
        assert submit(base, secret).status_code == 201
        assert submit(base, "guess").status_code == 401
        unsigned = httpx.post(f"{base}/v1/escalations", content=b"{}", timeout=5)
        assert unsigned.status_code == 401
    first_log = log[0]
    assert "No SIGNOFF_WEBHOOK_SECRET was set" in first_log
    assert str(secret_file.resolve()) in first_log
    assert "(mode 0600)" in first_log
    assert f"signoff send --url {base} examples/refund.json" in first_log
    assert secret not in first_log  # the secret itself stays in the file

    with serving(isolated, database) as (base, log):
        assert secret_file.read_text().strip() == secret
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert submit(base, secret).status_code == 201
    assert "No SIGNOFF_WEBHOOK_SECRET was set" not in log[0]
    assert f"http://127.0.0.1:{base.rsplit(':', 1)[1]}" in log[0]
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone() == (2,)
    conn.close()


def test_serve_logs_no_scheduler_chatter(isolated: Path) -> None:
    with serving(isolated, isolated.parent / "serve.db", SIGNOFF_WEBHOOK_SECRET=SECRET) as (
        _,
        log,
    ):
        time.sleep(2.5)  # two or three SLA sweeps
    assert "apscheduler" not in log[0]
    assert "Application startup complete" in log[0]


def test_serve_with_a_secret_set_makes_no_file(isolated: Path) -> None:
    with serving(isolated, isolated.parent / "serve.db", SIGNOFF_WEBHOOK_SECRET=SECRET) as (
        base,
        log,
    ):
        assert submit(base, SECRET).status_code == 201
    assert not (isolated / ".signoff-webhook-secret").exists()
    assert "No SIGNOFF_WEBHOOK_SECRET was set" not in log[0]


def test_serve_treats_an_empty_secret_as_unset(isolated: Path) -> None:
    # `SIGNOFF_WEBHOOK_SECRET=` (a .env template left blank) must not leave the webhook
    # without a working secret.
    with serving(isolated, isolated.parent / "serve.db", SIGNOFF_WEBHOOK_SECRET="") as (base, log):
        secret = (isolated / ".signoff-webhook-secret").read_text().strip()
        assert len(secret) >= 32
        assert submit(base, secret).status_code == 201
        assert submit(base, "").status_code == 401
    assert "No SIGNOFF_WEBHOOK_SECRET was set" in log[0]


def refused_serve(cwd: Path, **env: str) -> str:
    """Run `signoff serve` where it must refuse to start; its stderr."""
    done = subprocess.run(  # noqa: S603
        [*CLI, "serve", "--port", str(free_port())],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(SIGNOFF_DATABASE_URL=f"sqlite:///{cwd.parent / 'serve.db'}", **env),
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr + done.stdout


def test_serve_refuses_an_empty_secret_file(isolated: Path) -> None:
    (isolated / ".signoff-webhook-secret").write_text("\n")
    said = refused_serve(isolated)
    assert "signoff: ./.signoff-webhook-secret holds no secret" in said


def test_serve_refuses_a_broken_policy(isolated: Path) -> None:
    broken = isolated / "broken.yaml"
    broken.write_text(DESIGN_EXAMPLE.read_text().replace("quorum: 2", "quorum: 0"))
    said = refused_serve(isolated, SIGNOFF_WEBHOOK_SECRET=SECRET, SIGNOFF_POLICY=str(broken))
    assert f"{broken}:21: lanes.stop_the_line.quorum:" in said


def test_serve_refuses_a_slack_token_without_a_way_to_take_clicks(isolated: Path) -> None:
    said = refused_serve(
        isolated, SIGNOFF_WEBHOOK_SECRET=SECRET, SIGNOFF_SLACK_BOT_TOKEN="xoxb-test-only"
    )
    assert said.strip() == (
        "signoff: Slack needs SIGNOFF_SLACK_SIGNING_SECRET (clicks over HTTP at /slack/events)"
        " or SIGNOFF_SLACK_APP_TOKEN (Socket Mode) besides SIGNOFF_SLACK_BOT_TOKEN"
    )
    assert "xoxb-test-only" not in said


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")},
        "SIGNOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "SIGNOFF_WEBHOOK_SECRET": "x",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers above 1 needs PostgreSQL" in done.stderr
    assert not (tmp_path / "w.db").exists() or (tmp_path / "w.db").stat().st_size == 0


def test_slack_manifest_fills_in_the_interactivity_url_and_the_scopes() -> None:
    import yaml

    from adapters.slack.manifest import BOT_SCOPES

    result = invoke(["slack", "manifest", "--url", "https://signoff.example.com/"])
    assert result.exit_code == 0, result.output
    found = yaml.safe_load(result.stdout)
    assert found["settings"]["interactivity"] == {
        "is_enabled": True,
        "request_url": "https://signoff.example.com/slack/events",
    }
    assert found["settings"]["socket_mode_enabled"] is False
    assert found["oauth_config"]["scopes"]["bot"] == BOT_SCOPES
    assert BOT_SCOPES == [
        "chat:write",
        "im:write",
        "users:read",
        "users:read.email",
        "usergroups:read",
        "files:write",
        "channels:history",
        "groups:history",
        "im:history",
    ]
    socket = json.loads(invoke(["slack", "manifest", "--socket-mode", "--format", "json"]).stdout)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in socket["settings"]["interactivity"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give Signoff's public base URL (--url https://...), or --socket-mode"),
        (["--url", "http://signoff.example.com"], "Slack sends clicks only to an https:// URL"),
        (["--url", "https://x.example", "--name", "n" * 36], "name has 1 to 35 characters"),
    ],
)
def test_slack_manifest_refuses_what_slack_would(args: list[str], message: str) -> None:
    result = invoke(["slack", "manifest", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr


def test_discord_invite_url_from_the_token_or_the_client_id() -> None:
    from adapters.discord.invite import PERMISSIONS, permissions

    token = "MTEyMjMzNDQ1NTY2Nzc4ODk5.GxXxXx.not-a-real-secret"
    result = invoke(["discord", "invite-url"], SIGNOFF_DISCORD_BOT_TOKEN=token)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "https://discord.com/oauth2/authorize?client_id=112233445566778899&scope=bot"
        f"&permissions={permissions()}"
    )
    assert permissions() == sum(PERMISSIONS.values()) == 309237763072
    assert token not in result.output
    chosen = invoke(
        [
            "discord",
            "invite-url",
            "--client-id",
            "998877665544332211",
            "--guild-id",
            "112233445566778800",
        ]
    )
    assert chosen.stdout.strip().endswith("&guild_id=112233445566778800&disable_guild_select=true")
    assert "client_id=998877665544332211" in chosen.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "give --client-id: SIGNOFF_DISCORD_BOT_TOKEN is not set"),
        ([], {"SIGNOFF_DISCORD_BOT_TOKEN": "abc"}, "SIGNOFF_DISCORD_BOT_TOKEN is not a bot token"),
        (["--client-id", "signoff"], {}, "'signoff' is not a Discord application ID"),
        (["--client-id", "1" * 17, "--guild-id", "x"], {}, "'x' is not a Discord server ID"),
    ],
)
def test_discord_invite_url_says_what_is_missing(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = invoke(["discord", "invite-url", *args], **env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert "abc" not in result.stderr


@pytest.mark.parametrize("name", ["SIGNOFF_DISCORD_IDENTITIES", "SIGNOFF_SOURCES"])
def test_a_setting_that_is_not_json_is_named_not_a_traceback(name: str) -> None:
    result = invoke(["discord", "invite-url"], **{name: "{nope"})
    assert result.exit_code == 2
    assert result.stderr.strip() == f"signoff: bad settings: {name} is not valid JSON"


def test_serve_with_a_discord_token_starts_while_discord_is_away(isolated: Path) -> None:
    token = "MTEyMjMzNDQ1NTY2Nzc4ODk5.GxXxXx.not-a-real-secret"
    away = f"http://127.0.0.1:{free_port()}/api/v10"  # nothing listens here
    with serving(
        isolated,
        isolated.parent / "serve.db",
        SIGNOFF_WEBHOOK_SECRET=SECRET,
        SIGNOFF_DISCORD_BOT_TOKEN=token,
        SIGNOFF_DISCORD_API_URL=away,
    ) as (base, log):
        assert submit(base, SECRET).status_code == 201  # the card waits in the outbox
        assert httpx.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
        time.sleep(1.5)  # a retry or two
    assert "platforms: discord" in log[0]
    assert "Discord: cannot reach" in log[0]
    assert token not in log[0]


def test_serve_with_a_discord_token_discord_refuses_stops_with_the_setting_named(
    isolated: Path,
) -> None:
    async def refuse() -> str:
        from tests.discord_api import discord_api

        async with discord_api(token="the-right-token") as api:
            code, _, err = await run_cli(
                "serve",
                "--port",
                str(free_port()),
                cwd=isolated,
                SIGNOFF_DATABASE_URL=f"sqlite:///{isolated.parent / 'serve.db'}",
                SIGNOFF_WEBHOOK_SECRET=SECRET,
                SIGNOFF_DISCORD_BOT_TOKEN="a-wrong-token",
                SIGNOFF_DISCORD_API_URL=api.url,
            )
        assert code == 2
        return err

    err = asyncio.run(refuse())
    assert err.count("Discord refused SIGNOFF_DISCORD_BOT_TOKEN (401 Unauthorized)") == 1
    assert "a-wrong-token" not in err
    assert "Traceback" not in err
