"""Callbacks cannot be turned against the network: special addresses refused unless
named, one resolution per delivery and the connection to the checked address (no DNS
rebinding), no redirects followed, TLS verified against the host name.

Real servers on loopback addresses stand in for the workflow and for an internal
service an attacker would like to reach; a scripted resolver stands in for DNS (the one
thing that cannot run here), answering differently from one call to the next as a
rebinding attacker's name server does."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from bot.callbacks import Callbacks, refused_kind, url_problem
from bot.config import Settings, host_allowed, ip_literal
from bot.protocols import DeliveryFailed
from bot.runtime import Runtime
from tests.conftest import SECRET, Api, MakeRuntime, case, free_port, http_server, wait_for
from tests.receiver import RECEIVER_HOSTS, Receiver, running

PAYLOAD = {"type": "decision", "escalation": {"id": "esc_1"}}
Scope = MutableMapping[str, Any]


class ScriptedResolver:
    """Answers the n-th lookup with the n-th answer (the last one from then on)."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [list(a) for a in answers]
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def never(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host!r} was resolved: an address in the URL needs no lookup")


async def send(callbacks: Callbacks, url: str) -> None:
    await callbacks.send(url, PAYLOAD, delivery="1", secret=SECRET, at=int(time.time()))


async def refused(callbacks: Callbacks, url: str) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as info:
        await send(callbacks, url)
    return info.value


@asynccontextmanager
async def callbacks_for(
    hosts: Sequence[str], resolver: Any = never, **extra: Any
) -> AsyncIterator[Callbacks]:
    found = Callbacks(hosts, timeout=5.0, resolver=resolver, **extra)
    try:
        yield found
    finally:
        await found.aclose()


def outward_address() -> str | None:
    """This machine's own non-loopback address (a stand-in for a public one), if any."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # UDP connect picks a route; nothing is sent
            found = str(sock.getsockname()[0])
    except OSError:
        return None
    return None if refused_kind(ipaddress.ip_address(found)) else found


# --- which addresses are refused -------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.3.4", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("fd00:ec2::23", "a cloud metadata address"),
        ("fd20:ce::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "loopback, inside an IPv6 address"),
        ("::ffff:169.254.169.254", "a cloud metadata address, inside an IPv6 address"),
        ("::ffff:0.0.0.0", "unspecified, inside an IPv6 address"),
        ("::ffff:100.100.100.200", "a cloud metadata address, inside an IPv6 address"),
        ("::127.0.0.1", "loopback, inside an IPv6 address"),
        ("::ffff:0:127.0.0.1", "loopback, inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address, inside an IPv6 address"),
        ("2002:7f00:1::", "loopback, inside an IPv6 address"),
    ],
)
def test_special_addresses_are_refused(address: str, kind: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",  # private ranges: a self-hosted tool calls back into its own network
        "172.16.0.1",
        "192.168.1.10",
        "fd12:3456::1",
        "100.64.0.1",
        "203.0.113.7",
        "8.8.8.8",
        "2606:4700::1111",
        "::ffff:10.0.0.1",
    ],
)
def test_private_and_public_addresses_are_allowed(address: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_addresses_in_any_spelling() -> None:
    settings = Settings(_env_file=None, callback_hosts=["127.0.0.1", "[::1]", "FD00:EC2:0::254"])  # type: ignore[call-arg]
    assert settings.callback_hosts == ["127.0.0.1", "::1", "fd00:ec2::254"]
    assert host_allowed("http://[::1]:8/x", settings.callback_hosts)
    assert host_allowed("http://[0:0::1]:8/x", settings.callback_hosts)
    assert host_allowed("http://[::ffff:127.0.0.1]/x", settings.callback_hosts)  # the same place
    assert not host_allowed("http://127.0.0.2/x", settings.callback_hosts)
    assert not host_allowed("http://[::2]/x", settings.callback_hosts)


@pytest.mark.parametrize(
    ("url", "hosts", "problem"),
    [
        ("http://127.0.0.1:9/x", [], "address 127.0.0.1 is loopback"),
        ("http://127.0.0.9/x", ["127.0.0.1"], "host '127.0.0.9' is not one"),
        ("http://[::1]/x", [], "address ::1 is loopback"),
        # an IPv4-mapped address is the IPv4 address it maps
        ("http://[::ffff:127.0.0.1]/x", [], "address ::ffff:127.0.0.1 is loopback"),
        ("http://[::ffff:7f00:1]/x", [], "address ::ffff:7f00:1 is loopback"),
        ("http://[64:ff9b::7f00:1]/x", [], "is loopback, inside an IPv6 address"),
        ("http://169.254.169.254/latest/meta-data", [], "is a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/x", [], "is a cloud metadata address"),
        ("http://[::ffff:a9fe:a9fe]/x", [], "is a cloud metadata address"),
        ("http://[fd00:ec2::254]/latest", [], "is a cloud metadata address"),
        ("http://100.100.100.200/latest/meta-data", [], "is a cloud metadata address"),
        ("http://0.0.0.0:8080/x", [], "is unspecified"),
        ("http://[::]:8080/x", [], "is unspecified"),
        ("http://224.0.0.1/x", [], "is multicast"),
        ("http://[fe80::1]/x", [], "is link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/", [], "a cloud metadata service"),
        ("http://metadata.google.internal./x", [], "a cloud metadata service"),
        ("http://metadata/computeMetadata/v1/", [], "a cloud metadata service"),
        # a pattern is not an exact entry: it never opens a metadata name
        ("http://metadata.google.internal/x", ["*.google.internal"], "a cloud metadata service"),
    ],
)
def test_what_a_submit_can_tell_without_dns(url: str, hosts: list[str], problem: str) -> None:
    found = url_problem(url, hosts)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("http://127.0.0.1:9/x", ["127.0.0.1"]),
        ("http://[::1]:9/x", ["::1"]),
        ("http://[::ffff:127.0.0.1]:9/x", ["127.0.0.1"]),
        ("http://169.254.169.254/x", ["169.254.169.254"]),
        ("http://metadata.google.internal/x", ["metadata.google.internal"]),
        ("http://10.0.0.5:9/x", []),
        ("https://hooks.example.com/x", []),
        ("http://localhost:9/x", []),  # a name: its answer is checked at each delivery
    ],
)
def test_what_an_explicit_entry_allows_at_submit(url: str, hosts: list[str]) -> None:
    assert url_problem(url, hosts) is None


# --- submit: 422 for what is refused, nothing written ------------------------------------


@asynccontextmanager
async def api_for(rt: Runtime) -> AsyncIterator[Api]:
    async with http_server(rt) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, rt)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/admin",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_a_refused_address_in_the_url_is_a_clear_422_and_nothing_is_written(
    make_runtime: MakeRuntime, sqlite_url: str, url: str
) -> None:
    rt = await make_runtime(sqlite_url)
    async with api_for(rt) as api:
        response = await api.post("/v1/escalations", case(callback_url=url))
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["field"] == "callback_url"
        assert "SIGNOFF_CALLBACK_HOSTS" in body["message"]
        assert "only when SIGNOFF_CALLBACK_HOSTS names" in body["message"]
        assert await api.count("cases") == 0
        assert await api.count("outbox") == 0


async def test_a_named_address_is_accepted_at_submit(
    make_runtime: MakeRuntime, sqlite_url: str
) -> None:
    rt = await make_runtime(sqlite_url, callback_hosts=["127.0.0.1", "169.254.169.254"])
    async with api_for(rt) as api:
        await api.submit(case(callback_url="http://127.0.0.1:8080/hook"))
        await api.submit(case(callback_url="http://169.254.169.254/hook"))
        response = await api.post("/v1/escalations", case(callback_url="http://[::1]/hook"))
        assert response.status_code == 422  # ::1 is not named: 127.0.0.1 does not stand for it


# --- delivery: one resolution, the checked address, every address checked -----------------


async def test_a_rebinding_answer_never_receives_the_callback() -> None:
    """The first answer is checked and used; the second (loopback) answer is refused,
    never connected to, and within one delivery the name is resolved only once."""
    port = free_port()
    good, internal = Receiver(SECRET), Receiver(SECRET)
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    # `*.rebind.test` allows the name; `127.0.0.2` opens that one loopback address
    async with (
        running(good, host="127.0.0.2", port=port),
        running(internal, host="127.0.0.1", port=port),
        callbacks_for(["*.rebind.test", "127.0.0.2"], resolver) as callbacks,
    ):
        url = f"http://hooks.rebind.test:{port}/hook"
        await send(callbacks, url)
        assert len(good.received) == 1
        assert good.received[0].signature_ok
        assert good.received[0].headers["host"] == f"hooks.rebind.test:{port}"
        assert resolver.calls == [("hooks.rebind.test", port)]
        failure = await refused(callbacks, url)
        assert failure.permanent
        assert failure.message.startswith(
            "callback refused: 'hooks.rebind.test' resolves to 127.0.0.1 (loopback)"
        )
        assert "SIGNOFF_CALLBACK_HOSTS" in failure.message
        assert len(resolver.calls) == 2
    assert internal.attempts == 0
    assert good.attempts == 1


async def test_a_public_first_answer_then_loopback_or_metadata_with_the_default_list() -> None:
    """The classic rebinding, with SIGNOFF_CALLBACK_HOSTS unset: a public-looking address
    (this machine's own, standing in) first, then 127.0.0.1, then 169.254.169.254."""
    outward = outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to stand in for a public one")
    port = free_port()
    good, internal = Receiver(SECRET), Receiver(SECRET)
    resolver = ScriptedResolver([outward], ["127.0.0.1"], ["169.254.169.254"])
    async with (
        running(good, host=outward, port=port),
        running(internal, host="127.0.0.1", port=port),
        callbacks_for([], resolver) as callbacks,
    ):
        url = f"http://hooks.example.test:{port}/hook"
        await send(callbacks, url)
        loopback = await refused(callbacks, url)
        metadata = await refused(callbacks, url)
    assert good.attempts == 1
    assert internal.attempts == 0
    assert loopback.permanent
    assert "127.0.0.1 (loopback)" in loopback.message
    assert metadata.permanent
    assert "169.254.169.254 (a cloud metadata address)" in metadata.message
    assert len(resolver.calls) == 3


async def test_a_mixed_answer_is_refused_whole() -> None:
    """A rebinding attacker writes the whole answer: one refused address refuses it."""
    port = free_port()
    good, internal = Receiver(SECRET), Receiver(SECRET)
    for answer in (["127.0.0.2", "127.0.0.1"], ["127.0.0.1", "127.0.0.2"], ["127.0.0.2", "::1"]):
        async with (
            running(good, host="127.0.0.2", port=port),
            running(internal, host="127.0.0.1", port=port),
            callbacks_for(["*.rebind.test", "127.0.0.2"], ScriptedResolver(answer)) as callbacks,
        ):
            failure = await refused(callbacks, f"http://hooks.rebind.test:{port}/hook")
        assert failure.permanent, answer
    assert good.attempts == 0
    assert internal.attempts == 0
    async with callbacks_for([], ScriptedResolver(["203.0.113.5", "169.254.169.254"])) as callbacks:
        failure = await refused(callbacks, "http://hooks.example.test/hook")
    assert failure.permanent
    assert "169.254.169.254 (a cloud metadata address)" in failure.message


async def test_the_connection_uses_the_checked_answer_not_a_second_lookup() -> None:
    """`hooks.pinned.test` exists only in our resolver: if anything looked the name up
    again at connect time (the system resolver), the delivery could not arrive."""
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("hooks.pinned.test", 80)
    resolver = ScriptedResolver(["127.0.0.1"])
    async with (
        running(Receiver(SECRET)) as hook,
        callbacks_for(["hooks.pinned.test"], resolver) as callbacks,
    ):
        port = httpx.URL(hook.url).port
        for _ in range(3):
            await send(callbacks, f"http://hooks.pinned.test:{port}/hook")
    assert len(hook.received) == 3
    assert len(resolver.calls) == 3  # once per delivery, kept-alive connection or not


async def test_an_address_in_the_url_is_called_when_named_without_a_lookup() -> None:
    for host in ("127.0.0.1", "::1"):
        async with running(Receiver(SECRET), host=host) as hook, callbacks_for([host]) as callbacks:
            await send(callbacks, hook.url)  # `never` fails the test if anything resolves
            assert len(hook.received) == 1
            assert hook.received[0].signature_ok
        async with callbacks_for([]) as callbacks:
            failure = await refused(callbacks, hook.url)
        assert failure.permanent
        assert "is loopback" in failure.message


@pytest.mark.parametrize(
    ("hosts", "answer", "opened"),
    [
        (["hooks.local.test"], "127.0.0.1", True),  # the exact name opens loopback for it
        (["hooks.local.test"], "::1", True),
        (["*.local.test"], "127.0.0.1", False),  # a pattern never opens a special address
        (["*.local.test"], "169.254.169.254", False),
        (["*.local.test", "127.0.0.1"], "127.0.0.1", True),  # the address itself does
        (["hooks.local.test"], "169.254.169.254", False),  # a name does not open metadata
        (["hooks.local.test"], "::ffff:169.254.169.254", False),
        (["hooks.local.test"], "64:ff9b::a9fe:a9fe", False),
        (["hooks.local.test", "169.254.169.254"], "169.254.169.254", True),
        (["hooks.local.test"], "fd00:ec2::254", False),
        (["hooks.local.test"], "10.0.0.7", True),
        ([], "127.0.0.1", False),
        ([], "fe80::1%1", False),
        ([], "192.168.0.7", True),
    ],
)
async def test_what_opens_a_refused_answer(hosts: list[str], answer: str, opened: bool) -> None:
    async with callbacks_for(hosts, ScriptedResolver([answer])) as callbacks:
        if opened:
            pin = await callbacks.check("http://hooks.local.test/hook")
            assert pin.addresses == (answer,)
        else:
            failure = await refused(callbacks, "http://hooks.local.test/hook")
            assert failure.permanent
            assert f"resolves to {ip_literal(answer.partition('%')[0])} (" in failure.message


async def test_a_metadata_name_written_exactly_is_called() -> None:
    resolver = ScriptedResolver(["169.254.169.254"])
    async with callbacks_for(["metadata.google.internal"], resolver) as callbacks:
        pin = await callbacks.check("http://metadata.google.internal/hook")
    assert pin.addresses == ("169.254.169.254",)


async def test_a_name_that_does_not_resolve_is_retried_not_dead() -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async with callbacks_for([], broken) as callbacks:
        failure = await refused(callbacks, "http://hooks.example.test/hook")
    assert not failure.permanent
    assert failure.message.startswith("callback host 'hooks.example.test' did not resolve")
    async with callbacks_for([], ScriptedResolver([])) as callbacks:
        failure = await refused(callbacks, "http://hooks.example.test/hook")
    assert not failure.permanent
    assert "no address" in failure.message


# --- redirects ------------------------------------------------------------------------


def redirecting(status: int, location: str) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"location", location.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


@asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1", **config: Any) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", **config)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_is_a_failed_try(status: int) -> None:
    async with running(Receiver(SECRET)) as internal:
        for location in (internal.url, "http://169.254.169.254/latest/meta-data/"):
            async with (
                serving(redirecting(status, location)) as port,
                callbacks_for(RECEIVER_HOSTS) as callbacks,
            ):
                failure = await refused(callbacks, f"http://127.0.0.1:{port}/hook")
            assert not failure.permanent  # retried, then dead after OUTBOX_DEAD_AFTER
            assert failure.message.startswith(f"callback answered HTTP {status}, a redirect")
            assert "not followed" in failure.message
            assert location not in failure.message
    assert internal.attempts == 0


# --- TLS: the certificate is verified for the name, over the pinned address -------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_verifies_the_certificate_for_the_host_name(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("hooks.tls.test")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    resolver = ScriptedResolver(["127.0.0.1"])
    async with (
        running(Receiver(SECRET), **tls) as hook,
        callbacks_for(["hooks.tls.test"], resolver, verify=trusting(ca)) as callbacks,
    ):
        port = httpx.URL(hook.url).port
        await send(callbacks, f"https://hooks.tls.test:{port}/hook")
        assert len(hook.received) == 1
        assert hook.received[0].signature_ok
        assert hook.received[0].headers["host"] == f"hooks.tls.test:{port}"
        # the same server under another name: its certificate does not name that one
        callbacks.hosts = ("hooks.tls.test", "other.tls.test")
        failure = await refused(callbacks, f"https://other.tls.test:{port}/hook")
        assert not failure.permanent
        assert "CERTIFICATE_VERIFY_FAILED" in failure.message
        assert "other.tls.test" in failure.message  # checked against the name, not the IP
    async with (
        running(Receiver(SECRET), **tls) as hook,
        callbacks_for(["hooks.tls.test"], resolver) as callbacks,  # the system's CAs only
    ):
        port = httpx.URL(hook.url).port
        failure = await refused(callbacks, f"https://hooks.tls.test:{port}/hook")
        assert "CERTIFICATE_VERIFY_FAILED" in failure.message
        assert hook.attempts == 0


# --- end to end: submit, the outbox delivers, GET shows what became of it ---------------


async def delivery_of(api: Api, case_id: str) -> dict[str, Any]:
    """The case's callback delivery as GET shows it."""
    response = await api.get(f"/v1/escalations/{case_id}")
    assert response.status_code == 200, response.text
    [found] = [d for d in response.json()["deliveries"] if d["kind"] == "callback"]
    return dict(found)


async def settled(api: Api, case_id: str) -> dict[str, Any]:
    """The callback delivery once it is no longer pending (or pending after 5 s)."""
    for _ in range(250):
        found = await delivery_of(api, case_id)
        if found["status"] != "pending":
            break
        await asyncio.sleep(0.02)
    return found


async def test_end_to_end_a_rebound_name_is_dead_lettered_with_a_clear_error(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    port = free_port()
    good, internal = Receiver(SECRET), Receiver(SECRET)
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    async with (
        running(good, host="127.0.0.2", port=port),
        running(internal, host="127.0.0.1", port=port),
    ):
        rt = await make_runtime(
            database_url, callback_hosts=["*.rebind.test", "127.0.0.2"], outbox_max_backoff=0.1
        )
        rt.outbox.callbacks.resolver = resolver
        url = f"http://hooks.rebind.test:{port}/hook"
        auto = {"recommendation.confidence": 0.99, "callback_url": url}
        async with api_for(rt) as api:
            first = (await api.submit(case(**auto)))["id"]
            await wait_for(lambda: len(good.received) == 1)
            assert good.received[0].body["escalation"]["id"] == first
            assert good.received[0].signature_ok
            # another body: the same signed request again would be a replay of the first
            second = (await api.submit(case(**auto, title="Expense ER-2")))["id"]
            assert second != first
            dead = await settled(api, second)
            assert dead["status"] == "dead"
            assert dead["attempts"] == 1  # refused once, not retried
            error = str(dead["last_error"])
            assert error.startswith(
                "callback refused: 'hooks.rebind.test' resolves to 127.0.0.1 (loopback)"
            )
            assert SECRET not in error
            assert "escalation" not in error
            assert (await settled(api, first))["status"] == "delivered"
    assert internal.attempts == 0
    assert len(resolver.calls) == 2


async def test_end_to_end_to_a_workflow_on_the_same_machine(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    """SIGNOFF_CALLBACK_HOSTS=["127.0.0.1"], the system resolver, a real receiver."""
    async with running(Receiver(SECRET)) as hook:
        rt = await make_runtime(database_url, callback_hosts=RECEIVER_HOSTS)
        async with api_for(rt) as api:
            submitted = await api.submit(
                case(callback_url=hook.url, **{"recommendation.confidence": 0.99})
            )
            await wait_for(lambda: len(hook.received) == 1)
            [got] = hook.received
            assert got.signature_ok
            assert got.body["escalation"]["id"] == submitted["id"]
            assert (await settled(api, submitted["id"]))["status"] == "delivered"


async def test_end_to_end_localhost_is_refused_unless_named(
    make_runtime: MakeRuntime, sqlite_url: str
) -> None:
    """`localhost` passes submit (a name) and is refused at delivery with an empty list:
    its answer is loopback."""
    async with running(Receiver(SECRET)) as hook:
        rt = await make_runtime(sqlite_url, outbox_max_backoff=0.1)
        port = httpx.URL(hook.url).port
        async with api_for(rt) as api:
            submitted = await api.submit(
                case(
                    callback_url=f"http://localhost:{port}/hook",
                    **{"recommendation.confidence": 0.99},
                )
            )
            found = await settled(api, submitted["id"])
            assert found["status"] == "dead"
            assert "'localhost' resolves to" in str(found["last_error"])
            assert "(loopback)" in str(found["last_error"])
    assert hook.attempts == 0
