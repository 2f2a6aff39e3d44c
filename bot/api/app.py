"""The FastAPI application: routes of DESIGN.md's HTTP table (Slack's and the reports
come with their own issues).

Every request is authenticated before its body is parsed, so an unsigned caller
learns nothing about the schema. Bodies are read raw (the signature covers the exact
bytes), bounded at 256 KiB, and validated with pydantic; errors come back as
`{"error": code, "message": sentence, "errors": [{"field", "message"}]}`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import orjson
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot import __version__
from bot.analytics.report import Report, Week, schedule_zone, weekly
from bot.api.auth import Authenticator, Caller
from bot.api.metrics import ASGIApp, Message, Metrics, Receive, Scope, Send
from bot.callbacks import url_problem
from bot.errors import AuthError, ForbiddenError, InvalidInput, NotFound, SignoffError
from bot.intake import prepare
from bot.queries import MAX_PAGE, get_case, list_cases
from bot.runtime import Runtime, configure_logging
from bot.schemas import (
    MAX_BODY_BYTES,
    NO_NUL,
    CancelIn,
    CaseIn,
    CaseList,
    CaseOut,
    ChangeOut,
    ErrorOut,
    HealthOut,
    InfoIn,
    SubmitOut,
)
from bot.service import TERMINAL
from bot.signing import HEADER as SIGNATURE_HEADER
from bot.store import replays
from bot.validation import dotted, explain
from bot.waiters import MAX_WAIT, wait_for_change

log = logging.getLogger(__name__)

INTAKE_HEADERS = ("x-signoff-signature", "x-signoff-source", "authorization", "idempotency-key")
INTAKE_HEADER_BYTES = frozenset(h.encode() for h in INTAKE_HEADERS)
Status = Literal[
    "pending",
    "info_requested",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "auto_decided",
]
STATUSES: tuple[str, ...] = get_args(Status)


SECURITY_SCHEMES: dict[str, Any] = {
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": "Signature v2: `t=<unix seconds>,v2=<hex HMAC-SHA256(secret, "
        '"<t>.<METHOD>.<path?query>." + raw body)>`, METHOD upper case, the path and query '
        "exactly as sent, the body empty for GET; several `v2=` entries while rotating a "
        "secret; refused outside a 300 s window. A mutating request sent again with the "
        'same signature gets the first answer and changes nothing. v1 (`"<t>." + body`) '
        "is refused unless SIGNOFF_ACCEPT_V1=true, and then only on POST /v1/escalations.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A source's token, for tools that cannot sign. Nothing marks a "
        "resent request: send an Idempotency-Key with each submit.",
    },
    "reportsToken": {"type": "http", "scheme": "bearer", "description": "SIGNOFF_REPORTS_TOKEN"},
}


def with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """The security schemes, and which routes take which."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        needed: list[dict[str, list[str]]]
        if path.startswith("/v1/escalations"):
            needed = [{"signature": []}, {"bearer": []}]
        elif path.startswith("/v1/reports/"):
            needed = [{"reportsToken": []}]
        else:
            continue
        for operation in operations.values():
            operation["security"] = needed
    return schema


def target(scope: Scope) -> str:
    """The request target exactly as the client sent it: what a v2 signature covers."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    raw = path + b"?" + query if query else path
    return str(raw.decode("latin-1"))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(exc: SignoffError) -> Response:
    headers = (
        {"WWW-Authenticate": 'Signature realm="signoff"'} if isinstance(exc, AuthError) else None
    )
    return json_response(exc.status, exc.to_json(), headers)


def _field(loc: tuple[Any, ...]) -> str:
    # FastAPI puts where a value came from first: `query.limit`, `body.title`
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    return dotted(loc) or "(body)"


def validation_error(
    exc: ValidationError | RequestValidationError,
    what: str,
    model: type[BaseModel] | None = None,
) -> Response:
    """422 with one sentence per problem, each saying what would be allowed."""
    errors = []
    for error in exc.errors():
        loc, message = explain(error, model)
        errors.append({"field": _field(loc), "message": message})
    first = errors[0] if errors else {"field": "(body)", "message": "invalid"}
    summary = f"{what}: {first['field']}: {first['message']}"
    if len(errors) > 1:
        summary += f" (and {len(errors) - 1} more)"
    return json_response(422, {"error": "validation_failed", "message": summary, "errors": errors})


DRAIN_LIMIT = 8 * 1024 * 1024
PLATFORM_BODY_BYTES = 2 * 1024 * 1024


def body_limit(app: ASGIApp, limit: int, paths: Mapping[str, int] | None = None) -> ASGIApp:
    """Refuse bodies over `limit` bytes (or `paths[path]`) with 413, whether or not
    Content-Length says so."""
    special = dict(paths or {})

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await app(scope, receive, send)
            return
        limit_here = special.get(scope["path"], limit)
        declared = 0
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                declared = int(value) if value.isdigit() else DRAIN_LIMIT + 1
        chunks: list[bytes] = []
        size = 0
        too_big = declared > limit_here
        if declared <= DRAIN_LIMIT:
            # Read the body (keeping it only while under the limit) so that a client
            # still sending gets to read the 413 instead of a reset connection.
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                too_big = too_big or size > limit_here
                if not too_big:
                    chunks.append(chunk)
                if not message.get("more_body", False) or size > DRAIN_LIMIT:
                    break
        if too_big:
            body = orjson.dumps(
                {
                    "error": "too_large",
                    "message": f"the body is larger than {limit_here // 1024} KiB; send less "
                    "(summaries and evidence can link to the full text)",
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        payload = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await app(scope, replay, send)

    return limited


class SignoffApp(FastAPI):
    """FastAPI, with a front door: bodies are bounded before anything reads them, and
    the hot intake route skips FastAPI's middleware and routing."""

    front: ASGIApp | None = None
    startup_error: SignoffError | None = None  # why the runtime would not start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and scope["type"] == "http":
            await self.front(scope, receive, send)
        elif scope["type"] == "lifespan":
            await super().__call__(scope, receive, self._quiet(send))
        else:
            await super().__call__(scope, receive, send)

    def _quiet(self, send: Send) -> Send:
        """A start refused for a reason Signoff explains (a setting a platform refused)
        is said once by `serve`, without the traceback the server would print."""

        async def quiet(message: Message) -> None:
            if message.get("type") == "lifespan.startup.failed" and self.startup_error:
                message = {**message, "message": ""}
            await send(message)

        return quiet


def create_app(runtime: Runtime, *, manage_runtime: bool = True) -> FastAPI:
    """The app. With `manage_runtime`, the app's lifespan starts and stops `runtime`."""
    metrics = Metrics()
    auth = Authenticator(
        runtime.sources, runtime.settings.signature_window, accept_v1=runtime.settings.accept_v1
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            try:
                await runtime.start()
            except SignoffError as exc:
                app.startup_error = exc
                raise
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.stop()

    app = SignoffApp(
        title="Signoff",
        version=__version__,
        lifespan=lifespan,
        description="Human sign-off for AI workflows: submit a case, get a decision.",
    )
    app.state.runtime = runtime

    @app.exception_handler(SignoffError)
    async def _signoff_error(_: Request, exc: SignoffError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's own refusals (no such path, a method the path does not take) in
        # the same shape as every other error, as the OpenAPI document says
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        where = f"{request.method} {request.url.path[:200]}"
        message = {
            404: f"no route {where}: the routes are in /openapi.json",
            405: f"{where} is not allowed: the routes and their methods are in /openapi.json",
        }.get(exc.status_code, str(exc.detail))
        return json_response(
            exc.status_code, {"error": code, "message": message}, dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> Response:
        return validation_error(exc, "invalid request")

    async def caller(request: Request, body: bytes = b"") -> str:
        return (await who(request, body)).source

    async def who(request: Request, body: bytes = b"") -> Caller:
        return auth.authenticate(
            request.method, target(request.scope), request.headers, body, time.time()
        )

    def expiry(caller: Caller) -> datetime:
        assert caller.signed_at is not None
        return replays.expiry(caller.signed_at, auth.window)

    def parse(model: type[BaseModel], body: bytes, what: str) -> BaseModel | Response:
        if not body.strip() and model is not CancelIn:
            why = "is empty: send a JSON object (see /openapi.json)"
            return json_response(
                422,
                {
                    "error": "validation_failed",
                    "message": f"{what}: (body): {why}",
                    "errors": [{"field": "(body)", "message": why}],
                },
            )
        try:
            return model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return validation_error(exc, what, model)

    def body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
        return {
            "requestBody": {
                "required": required,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        }

    why_refused = {
        401: "not signed, a bad signature or token, or outside the 300 s window",
        403: "the case belongs to another source (or, for reports, reports are off)",
        404: "no case with that id",
        409: "refused in the case's state (e.g. already decided), or an idempotency key "
        "reused with another body",
        413: "the body is over 256 KiB",
        422: "invalid input: `errors` names each field and says what is allowed",
    }

    def errors_doc(*codes: int) -> dict[int | str, dict[str, Any]]:
        """The refusals a route really gives, each with the error body's schema."""
        found: dict[int | str, dict[str, Any]] = {
            code: {"model": ErrorOut, "description": why_refused[code]} for code in codes
        }
        if 401 in found:
            found[401]["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Signature"}
            }
        return found

    # OpenAPI links: from a submitted case's id to the routes that take it
    case_links = {
        name: {"operationId": operation, "parameters": {"case_id": "$response.body#/id"}}
        for name, operation in (
            ("read", "read_case"),
            ("answer_info", "answer_info"),
            ("cancel", "cancel_case"),
        )
    }
    location = {"Location": {"schema": {"type": "string"}, "description": "the case's URL"}}

    def could_be(case_id: str) -> None:
        """An id no case can have (too long, or a NUL that PostgreSQL cannot even compare)
        is a 404 without asking the database."""
        if len(case_id) > 64 or "\x00" in case_id:
            raise NotFound("no case with that id")

    def intake_headers(headers: Mapping[str, str]) -> dict[str, str]:
        return {k: headers[k] for k in INTAKE_HEADERS if k in headers}

    async def submit_case(headers: Mapping[str, str], body: bytes, where: str) -> Response:
        """`POST /v1/escalations`: authenticate, validate, route, commit, answer.

        `where` is the request target as sent (the raw path and `?query`)."""
        try:
            signed = auth.authenticate("POST", where, headers, body, time.time())
            source = signed.source
            case = parse(CaseIn, body, "invalid case")
            if isinstance(case, Response):
                return case
            assert isinstance(case, CaseIn)
            if case.source != source:
                raise ForbiddenError(
                    f"the request is authenticated as source {source!r} but the case says "
                    f"source {case.source!r}"
                )
            hosts = runtime.settings.callback_hosts
            problem = url_problem(case.callback_url, hosts) if case.callback_url else None
            if problem is not None:
                raise InvalidInput(problem, field="callback_url")
            key = headers.get("idempotency-key")
            if key is not None and (not key.strip() or len(key) > 200):
                raise InvalidInput(
                    "Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key"
                )
            if key and case.idempotency_key and key != case.idempotency_key:
                raise InvalidInput(
                    "the Idempotency-Key header and the idempotency_key field differ; send one",
                    field="idempotency_key",
                )
            prepared = prepare(
                case,
                runtime.policy,
                runtime.platforms,
                runtime.clock.now(),
                key or case.idempotency_key,
            )
            if signed.replay_key is not None:
                prepared.replay_key = signed.replay_key
                prepared.replay_expires_at = expiry(signed)
            accepted = await runtime.writer.submit(prepared)
        except SignoffError as exc:
            return error_response(exc)
        if accepted.status_code == 201 and not accepted.replayed:
            metrics.intake.labels(accepted.response["lane"]).inc()
        return json_response(
            accepted.status_code,
            accepted.response,
            {"Location": f"/v1/escalations/{accepted.response['id']}"},
        )

    @app.post(
        "/v1/escalations",
        status_code=201,
        response_model=None,
        openapi_extra=body_doc(CaseIn),
        responses={
            201: {
                "model": SubmitOut,
                "description": "the case, routed (decided at once in the auto and block lanes)",
                "headers": location,
                "links": case_links,
            },
            200: {
                "model": SubmitOut,
                "description": "a replay: the same Idempotency-Key and body; the first answer",
                "headers": location,
                "links": case_links,
            },
            **errors_doc(401, 403, 409, 413, 422),
        },
        operation_id="submit_case",
        summary="Submit a case",
    )
    async def submit(request: Request) -> Response:
        return await submit_case(
            intake_headers(request.headers), await request.body(), target(request.scope)
        )

    @app.get(
        "/v1/escalations/{case_id}",
        response_model=CaseOut,
        responses=errors_doc(401, 403, 404),
        operation_id="read_case",
        summary="Read a case: status, decisions, events, deliveries",
        description=(
            "With `wait`, a long-poll: the answer comes as soon as the case's status "
            "changes (decided, expired, cancelled, asked for info or answered), or when "
            "`wait` seconds have passed, with the case as it then is. A case that is "
            "already closed answers at once."
        ),
    )
    async def read(
        request: Request,
        case_id: str,
        wait: float | None = Query(
            None,
            ge=0,
            le=MAX_WAIT,
            description="seconds to wait for the case's status to change, at most 60",
        ),
    ) -> Response:
        source = await caller(request)
        could_be(case_id)
        if not wait:
            return json_response(200, await get_case(runtime.store, case_id, source))
        deadline = asyncio.get_running_loop().time() + wait
        first: str | None = None  # the status when the wait began
        while True:
            async with runtime.waiters.watch(case_id) as changed:
                found = await get_case(runtime.store, case_id, source)
                status = found["status"]
                first = first or status
                if changed is None or status in TERMINAL or status != first:
                    return json_response(200, found)
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or not await wait_for_change(changed, left):
                    return json_response(200, await get_case(runtime.store, case_id, source))
            # changed: read again; a change that left the status as it was (a claim,
            # an escalation) waits on

    @app.get(
        "/v1/escalations",
        response_model=CaseList,
        responses=errors_doc(401, 422),
        operation_id="list_cases",
        summary="List this source's cases, newest first",
    )
    async def listing(
        request: Request,
        status: Annotated[Status | None, Query()] = None,
        lane: str | None = Query(None, max_length=64, pattern=NO_NUL),
        kind: str | None = Query(None, max_length=64, pattern=NO_NUL),
        cursor: str | None = Query(
            None, max_length=200, pattern=NO_NUL, description="the `next` of the previous page"
        ),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
    ) -> Response:
        source = await caller(request)
        page = await list_cases(
            runtime.engine, source, status=status, lane=lane, kind=kind, cursor=cursor, limit=limit
        )
        return json_response(200, page)

    @app.post(
        "/v1/escalations/{case_id}/info",
        response_model=None,
        openapi_extra=body_doc(InfoIn),
        responses={200: {"model": ChangeOut}, **errors_doc(401, 403, 404, 409, 413, 422)},
        operation_id="answer_info",
        summary="Answer a reviewer's request for information",
    )
    async def info(request: Request, case_id: str) -> Response:
        async def answer(source: str, body: BaseModel) -> Any:
            assert isinstance(body, InfoIn)
            could_be(case_id)
            return await runtime.service.answer_info(case_id, source, body.text, body.facts)

        return await workflow_change(request, InfoIn, "invalid answer", answer)

    @app.post(
        "/v1/escalations/{case_id}/cancel",
        response_model=None,
        openapi_extra=body_doc(CancelIn, required=False),
        responses={200: {"model": ChangeOut}, **errors_doc(401, 403, 404, 409, 413, 422)},
        operation_id="cancel_case",
        summary="Withdraw a case",
    )
    async def cancel(request: Request, case_id: str) -> Response:
        async def withdraw(source: str, body: BaseModel) -> Any:
            assert isinstance(body, CancelIn)
            could_be(case_id)
            return await runtime.service.cancel(case_id, source, body.reason)

        return await workflow_change(request, CancelIn, "invalid cancel", withdraw)

    async def workflow_change(
        request: Request,
        model: type[BaseModel],
        what: str,
        change: Callable[[str, BaseModel], Awaitable[Any]],
    ) -> Response:
        """Authenticate, validate the body against `model`, make the change, answer.

        Every POST under /v1/escalations/{id}/ comes here: a signed one is made at most
        once per signature, and a replay of it gets the first answer (refusals too)."""
        body = await request.body()
        signed = await who(request, body)
        parsed = parse(model, body, what)
        if isinstance(parsed, Response):
            return parsed

        async def make() -> replays.Answer:
            try:
                result = await change(signed.source, parsed)
                made = json_response(200, {"id": result.case_id, "status": result.status})
            except SignoffError as exc:
                made = error_response(exc)
            return replays.Answer(made.status_code, bytes(made.body))

        if signed.replay_key is None:
            answer = await make()
        else:
            key = (expiry(signed), signed.replay_key)
            answer = await replays.once(runtime.store, key, signed.source, make)
        return Response(answer.body, status_code=answer.status, media_type="application/json")

    def reports_caller(request: Request) -> None:
        """Reports span every source's cases: they take their own bearer token."""
        token = runtime.settings.reports_token
        if token is None:
            raise ForbiddenError(
                "reports are off: set SIGNOFF_REPORTS_TOKEN and send it as a bearer token"
            )
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("send SIGNOFF_REPORTS_TOKEN as `Authorization: Bearer <token>`")

    async def report_for(request: Request, week: str | None) -> Report:
        reports_caller(request)
        zone = schedule_zone(runtime.policy)
        now = runtime.clock.now()
        try:
            chosen = Week.parse(week, zone) if week else Week.last_complete(now, zone)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="week") from exc
        return await weekly(runtime.engine, runtime.policy, chosen, now)

    @app.get(
        "/v1/reports/weekly",
        responses=errors_doc(401, 403, 422),
        operation_id="weekly_report",
        summary="The weekly report (JSON)",
    )
    async def weekly_report(
        request: Request,
        week: str | None = Query(
            None, max_length=10, description="an ISO week such as 2026-W47 (default: the last)"
        ),
    ) -> Response:
        return json_response(200, (await report_for(request, week)).as_dict())

    @app.get(
        "/v1/reports/overrides",
        responses=errors_doc(401, 403, 422),
        operation_id="overrides_report",
        summary="The override analysis (JSON)",
    )
    async def overrides_report(
        request: Request,
        week: str | None = Query(
            None, max_length=10, description="an ISO week such as 2026-W47 (default: the last)"
        ),
    ) -> Response:
        return json_response(200, (await report_for(request, week)).overrides_dict())

    @app.get(
        "/healthz",
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "the database does not answer"}},
        operation_id="healthz",
        summary="Liveness, and whether the database answers",
    )
    async def healthz() -> Response:
        try:
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return json_response(503, {"status": "unhealthy", "database": "unreachable"})
        return json_response(
            200,
            {
                "status": "ok",
                "database": "ok",
                "version": __version__,
                "policy_version": runtime.policy.version,
            },
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format, version 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        operation_id="metrics",
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        data = await metrics.render(runtime.engine, time.time())
        return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (CaseIn, InfoIn, CancelIn):
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(found.pop("$defs", {}))
            components[model.__name__] = found
        _validation_errors_as_ours(schema)
        app.openapi_schema = with_security(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    def fast_intake(inner: ASGIApp) -> ASGIApp:
        """Serve the hot route without FastAPI's routing and request objects (about a
        third of a case's cost); every other request goes on to FastAPI."""

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] != "http"
                or scope["method"] != "POST"
                or scope["path"] != "/v1/escalations"
            ):
                await inner(scope, receive, send)
                return
            started = time.perf_counter()
            wanted = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in scope["headers"]
                if name in INTAKE_HEADER_BYTES
            }
            body = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            response = await submit_case(wanted, body, target(scope))
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            metrics.latency.labels("POST", "/v1/escalations", str(response.status_code)).observe(
                time.perf_counter() - started
            )

        return handle

    app.add_middleware(_Wrap, wrap=metrics.middleware)

    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    surface_limits = {}
    for surface in runtime.surfaces:
        for path, endpoint in surface.routes().items():
            app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
            # a platform's payload carries the whole message it came from
            surface_limits[path] = PLATFORM_BODY_BYTES
    web = runtime.adapters.get("web")
    if web is not None and hasattr(web, "app"):
        app.mount("/inbox", web.app)
    app.front = body_limit(fast_intake(rest), MAX_BODY_BYTES, surface_limits)
    return app


def _validation_errors_as_ours(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body where a route has parameters; Signoff's handler
    answers every validation error as ErrorOut, so the document says that."""
    ours = {"$ref": "#/components/schemas/ErrorOut"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            refused = operation.get("responses", {}).get("422")
            if refused is None:
                continue
            for media in refused.get("content", {}).values():
                if media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                    media["schema"] = ours
                    refused["description"] = "invalid input: `errors` names each field"
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


class _Wrap:
    """Lets plain ASGI wrappers sit in Starlette's middleware stack."""

    def __init__(self, app: ASGIApp, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self._app = wrap(app)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self._app(scope, receive, send)


def app_from_settings() -> FastAPI:
    """The app for one of several server processes (`signoff serve --workers N`)."""
    from bot.config import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(Runtime(settings))
