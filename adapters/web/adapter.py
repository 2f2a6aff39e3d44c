"""The web inbox: the third review surface beside Slack and Discord, served by
`signoff serve` under `/inbox/`.

Cards live in the database, so posting one is nothing to do here: the queue page reads
the open cases. What a reviewer does goes to the same decision service as a click in
Slack or Discord (same checks, same audit events, same callbacks, and the chat cards
are updated by the outbox), as reviewer `web:<email>`.

Pages are rendered on the server (Jinja2, every workflow string escaped) and work
without JavaScript; `static/inbox.js` adds the live refresh, the SLA countdown and the
keyboard. Every form carries the session's CSRF token; a POST without it, or from
another origin, is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adapters.cardtext import arg_json
from adapters.web.oidc import OidcClient, OidcError, Pending
from adapters.web.sessions import Session, Sessions
from adapters.web.views import (
    BOARD_LIMIT,
    MAX_PAGE,
    OPEN,
    Filters,
    board,
    history,
    live_version,
    queue,
    requested_by,
    thread,
)
from bot.errors import AlreadyDecided, ConfigError, DecisionRefused, NotFound
from bot.protocols import CardView, Delivery, Endpoint, MessageRef, Reviewer, Summary

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.policy import LoadedPolicy
    from bot.service import Service

log = logging.getLogger(__name__)

PREFIX = "/inbox"
COOKIE = "signoff_session"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ACTIONS = ("approve", "reject", "modify", "request_info", "acknowledge")
ARG_FIELD = "args."  # the edit form's field for one argument: `args.<name>`, as JSON
REFUSED_STATUS = {"not_an_approver": 403, "self_approval": 403, "already_decided": 409}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
OIDC_COOKIE = "signoff_oidc"
OIDC_COOKIE_SECONDS = 600  # a sign-in at the provider must come back within 10 minutes
OIDC_COOKIE_MAX = 2000
LANE_COLOURS = 7  # inbox.css: [data-lc="0"] to [data-lc="6"]; stop_the_line is red


def lane_colour(lane: str, lanes: Sequence[str]) -> str:
    """The lane's colour, as an index into the stylesheet's palette (the
    pages' CSP allows no inline style)."""
    if lane == "stop_the_line":
        return "stop"
    if lane in lanes:
        return str(list(lanes).index(lane) % LANE_COLOURS)
    return "none"


def countdown(due: datetime | None, now: datetime) -> str:
    """`due in 3h 12m`, `overdue by 5m`, or `no SLA`."""
    if due is None:
        return "no SLA"
    seconds = int((due - now).total_seconds())
    left = abs(seconds)
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = max(1, rest // 60) if not (days or hours) else rest // 60
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m"
    return f"due in {text}" if seconds > 0 else f"overdue by {text}"


class BadInput(ValueError):
    """A query parameter or form field the inbox does not take; shown on the page."""


class WebSurface:
    """The web inbox as an adapter (for authorization and identities) and a surface
    (started with the decision service). `app` is mounted at `/inbox`."""

    platform = "web"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.base_url()
        self.secure = self.base_url.startswith("https://")
        self._service: Service | None = None
        self._sessions: Sessions | None = None
        self.oidc: OidcClient | None = None
        self._oidc_key = b""
        if settings.oidc_issuer:
            self.oidc, self._oidc_key = _oidc_client(settings)
        self.templates = Environment(
            loader=PackageLoader("adapters.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals.update(root=PREFIX, countdown=countdown)
        static = Path(__file__).with_name("static")
        self.app = Starlette(
            routes=[
                Route("/", self.queue_page, methods=["GET"]),
                Route("/cases/{case_id}", self.case_page, methods=["GET"]),
                Route("/cases/{case_id}", self.case_action, methods=["POST"]),
                Route("/cases/{case_id}/live", self.case_live, methods=["GET"]),
                Route("/live", self.queue_live, methods=["GET"]),
                Route("/history", self.history_page, methods=["GET"]),
                Route("/board", self.board_page, methods=["GET"]),
                Route("/report", self.report_page, methods=["GET"]),
                Route("/signin", self.signin_page, methods=["GET"]),
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/oidc/start", self.oidc_start, methods=["GET"]),
                Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
                Mount("/static", StaticFiles(directory=static), name="static"),
            ]
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSurface:
        return cls(settings)

    # -- Surface -------------------------------------------------------------------

    def routes(self) -> Mapping[str, Endpoint]:
        return {}  # the inbox is mounted whole (bot.api.app), not route by route

    async def start(self, service: Service) -> None:
        self._service = service
        self._sessions = Sessions(service.store, self.settings.web_session_hours)
        first = await self.first_reviewer_link()
        if first is not None:
            # on the console only (never the log): this link is a credential
            email, url = first
            print(
                f"\nNobody has signed in to the web inbox yet. Sign in as {email} "
                f"(the first web approver in the policy) with this link, good for 15 minutes, "
                f"once:\n\n    {url}\n\nMore links: signoff web login-link EMAIL\n",
                file=sys.stderr,
                flush=True,
            )

    async def stop(self) -> None:
        if self.oidc is not None:
            await self.oidc.aclose()
        self._service = None

    @property
    def service(self) -> Service:
        if self._service is None:
            raise RuntimeError("the web inbox is not started")
        return self._service

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            raise RuntimeError("the web inbox is not started")
        return self._sessions

    @property
    def policy(self) -> LoadedPolicy:
        return self.service.policy

    async def first_reviewer_link(self) -> tuple[str, str] | None:
        """(email, sign-in URL) for the first web approver the policy names, when
        nobody has signed in yet and no SSO is set up: what `serve` prints at start."""
        if self.oidc is not None or await self.sessions.any_session():
            return None
        email = next(iter(self.members_of(self._all_web_entries())), None)
        if email is None:
            return None
        return email, await self.login_link(email)

    async def login_link(self, email: str) -> str:
        token = await self.sessions.new_link(email, self.service.clock.now())
        return f"{self.base_url}{PREFIX}/login?token={quote(token)}"

    def _all_web_entries(self) -> list[str]:
        found: list[str] = []
        for lane in self.policy.policy.lanes.values():
            found.extend(lane.approver_entries("web"))
        return found

    def members_of(self, entries: Sequence[str]) -> list[str]:
        """The e-mail addresses `entries` name, groups expanded, in order, once each."""
        groups = self.policy.policy.groups
        found: dict[str, None] = {}
        for entry in entries:
            if entry.startswith("group:"):
                for member in groups.get(entry.removeprefix("group:"), []):
                    found[member] = None
            else:
                found[entry] = None
        return list(found)

    # -- Adapter: cards live in the database; there is nothing to post --------------

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        return MessageRef(self.platform, channel, {"case": card.case_id})

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        return None  # the pages read the case; their live refresh shows the change

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        return None  # the case page's thread shows every event

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        return None  # a stop-the-line case heads the queue, in red

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        return None  # the report page is the summary

    async def identities(self, user_id: str) -> set[str]:
        return {user_id.lower(), f"web:{user_id.lower()}"}

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        return user_id.lower() in self.members_of(entries)

    # -- helpers -------------------------------------------------------------------

    def render(
        self,
        name: str,
        status: int = 200,
        *,
        session: Session | None = None,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        body = self.templates.get_template(name).render(session=session, **context)
        return HTMLResponse(body, status, headers={**SECURITY_HEADERS, **(headers or {})})

    def error(
        self, status: int, title: str, message: str, session: Session | None = None
    ) -> HTMLResponse:
        return self.render("error.html", status, session=session, title=title, message=message)

    async def session(self, request: Request) -> Session | None:
        if self._sessions is None:
            return None
        return await self.sessions.get(request.cookies.get(COOKIE), self.service.clock.now())

    def _sign_in_first(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/signin?next={quote(target, safe='')}", 303)

    def _same_origin(self, request: Request) -> bool:
        """A browser says where a form came from (Origin, else Referer); another site's
        page posting here is refused even with a stolen token."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin is None
        parts = urlsplit(origin)
        seen = f"{parts.scheme}://{parts.netloc}"
        own = f"{request.url.scheme}://{request.url.netloc}"
        public = urlsplit(self.base_url)
        return seen in (own, f"{public.scheme}://{public.netloc}")

    async def _form(self, request: Request) -> dict[str, str]:
        try:
            form = await request.form(max_files=0, max_fields=80)
        except Exception as exc:  # multipart's own errors: malformed or too many fields
            raise BadInput(f"the form could not be read: {str(exc)[:200]}") from exc
        found: dict[str, str] = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                raise BadInput("the form may not carry files")
            found[key] = value
        return found

    def _csrf_ok(self, session: Session, form: Mapping[str, str], request: Request) -> bool:
        given = form.get("csrf", "")
        return self._same_origin(request) and hmac.compare_digest(
            given.encode(), session.csrf.encode()
        )

    def _filters(self, request: Request, statuses: Sequence[str]) -> Filters:
        params = request.query_params
        lane = params.get("lane") or None
        kind = params.get("kind") or None
        status = params.get("status") or None
        lanes = self._lanes()
        if lane is not None and lane not in lanes:
            raise BadInput(f"there is no lane {lane[:64]!r}: the lanes are {', '.join(lanes)}")
        if kind is not None and not NAME.fullmatch(kind):
            raise BadInput("a kind is 1 to 64 lower-case letters, digits or _ . -")
        if status is not None and status not in statuses:
            raise BadInput(f"status is one of {', '.join(statuses)}")
        raw = params.get("page", "1")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise BadInput(f"page is a whole number from 1 to {MAX_PAGE}")
        return Filters(lane, kind, status, int(raw))

    def _lanes(self) -> list[str]:
        return [*self.policy.policy.lanes, "auto", "block"]

    def _kinds(self) -> list[str]:
        return sorted(k for k in self.policy.policy.kinds if k != "default")

    def _common(self, request: Request) -> dict[str, Any]:
        lanes = self._lanes()
        return {
            "now": self.service.clock.now(),
            "lanes": lanes,
            "kinds": self._kinds(),
            "colour": lambda lane: lane_colour(lane, lanes),
            "path": request.url.path,
        }

    # -- pages ---------------------------------------------------------------------

    async def _listing_page(
        self, request: Request, template: str, statuses: Sequence[str], reader: Any, **extra: Any
    ) -> Response:
        session = await self.session(request)
        if session is None:
            return self._sign_in_first(request)
        common = self._common(request)
        try:
            filters = self._filters(request, statuses)
        except BadInput as exc:
            listing = await self.service.store.run_read(lambda c: reader(c, Filters()))
            return self.render(
                template,
                400,
                session=session,
                filters=Filters(),
                listing=listing,
                statuses=statuses,
                problem=str(exc),
                **common,
                **extra,
            )
        listing = await self.service.store.run_read(lambda c: reader(c, filters))
        version = await self.service.store.run_read(lambda c: live_version(c))
        return self.render(
            template,
            session=session,
            filters=filters,
            listing=listing,
            statuses=statuses,
            problem=None,
            version=version,
            **common,
            **extra,
        )

    async def queue_page(self, request: Request) -> Response:
        return await self._listing_page(request, "queue.html", OPEN, queue)

    async def history_page(self, request: Request) -> Response:
        return await self._listing_page(
            request,
            "history.html",
            ("approved", "rejected", "expired", "cancelled", "auto_decided"),
            history,
        )

    async def board_page(self, request: Request) -> Response:
        return await self._listing_page(request, "board.html", (), board, board_limit=BOARD_LIMIT)

    async def queue_live(self, request: Request) -> Response:
        if await self.session(request) is None:
            return JSONResponse({"error": "signed_out"}, 401)
        version = await self.service.store.run_read(lambda c: live_version(c))
        return JSONResponse({"version": version}, headers={"Cache-Control": "no-store"})

    async def case_live(self, request: Request) -> Response:
        if await self.session(request) is None:
            return JSONResponse({"error": "signed_out"}, 401)
        case_id = request.path_params["case_id"][:64]
        version = await self.service.store.run_read(lambda c: live_version(c, case_id))
        return JSONResponse({"version": version}, headers={"Cache-Control": "no-store"})

    async def _case_context(self, session: Session, case_id: str) -> dict[str, Any]:
        card = await self.service.card(case_id)
        entries, requester, version = await self.service.store.run_read(
            lambda c: (thread(c, case_id), requested_by(c, case_id), live_version(c, case_id))
        )
        lane = self.policy.lane(card.lane)
        approvers = lane.approver_entries("web") if lane else []
        may_decide = bool(approvers) and await self.is_member(session.email, approvers)
        requester_names = await self.identities(session.email)
        own = requester is not None and requester.strip().lower() in requester_names
        why_not = None
        if card.actions and not may_decide:
            why_not = (
                f"You are not an approver for the {card.lane} lane, so you cannot decide this "
                "case. Ask one of the lane's approvers."
            )
        arg_texts = {}
        changed: list[str] = []
        if card.proposal is not None:
            arg_texts = {k: arg_json(v) for k, v in card.proposal.args.items()}
            if card.outcome is not None and card.outcome.args:
                changed = [
                    k for k, v in card.outcome.args.items() if card.proposal.args.get(k) != v
                ]
        return {
            "card": card,
            "arg_texts": arg_texts,
            "changed": changed,
            "arg_json": arg_json,
            "thread": entries,
            "may_decide": may_decide,
            "own_request": own,
            "why_not": why_not,
            "version": version,
            "open": card.status in OPEN,
        }

    async def case_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self._sign_in_first(request)
        case_id = request.path_params["case_id"][:64]
        try:
            context = await self._case_context(session, case_id)
        except NotFound:
            return self.error(404, "No such case", f"There is no case {case_id!r}.", session)
        done = request.query_params.get("done")
        return self.render(
            "case.html",
            session=session,
            done=done if done in ACTIONS else None,
            problem=None,
            form={},
            **context,
            **self._common(request),
        )

    async def case_action(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.error(
                403, "Signed out", "Your session has ended: sign in again, then repeat this."
            )
        case_id = request.path_params["case_id"][:64]
        try:
            form = await self._form(request)
        except BadInput as exc:
            return self.error(400, "That form could not be read", str(exc), session)
        if not self._csrf_ok(session, form, request):
            log.warning("web: a POST for case %s without a valid CSRF token was refused", case_id)
            return self.error(
                403,
                "This form has expired",
                "The form did not carry this session's token, or came from another site, so "
                "nothing was done. Reload the case and try again.",
                session,
            )
        action = form.get("action", "")
        code = form.get("reason_code") or None
        reason = form.get("reason", "")
        typed = {k.removeprefix(ARG_FIELD): v for k, v in form.items() if k.startswith(ARG_FIELD)}
        reviewer = Reviewer(self.platform, session.email, session.email)
        try:
            if action not in ACTIONS:
                raise BadInput(
                    f"{action[:40]!r} is not an action: approve, reject, modify, request_info "
                    "or acknowledge"
                )
            if action == "modify":
                await self.service.decide(
                    case_id, reviewer, action, code, reason, args=_parsed_args(typed)
                )
            elif action in ("approve", "reject"):
                await self.service.decide(case_id, reviewer, action, code, reason)
            elif action == "request_info":
                await self.service.request_info(case_id, reviewer, reason)
            else:
                await self.service.acknowledge(case_id, reviewer)
        except NotFound:
            return self.error(404, "No such case", f"There is no case {case_id!r}.", session)
        except (DecisionRefused, BadInput) as exc:
            status = 422
            message = str(exc)
            if isinstance(exc, DecisionRefused):
                status = REFUSED_STATUS.get(exc.code, 422)
                message = exc.message
                if isinstance(exc, AlreadyDecided):
                    status = 409
            context = await self._case_context(session, case_id)
            return self.render(
                "case.html",
                status,
                session=session,
                done=None,
                problem=message,
                form={
                    "action": action,
                    "reason_code": code or "",
                    "reason": reason[:4000],
                    "args": {k: v[:20_000] for k, v in typed.items()},
                },
                **context,
                **self._common(request),
            )
        return RedirectResponse(f"{PREFIX}/cases/{quote(case_id)}?done={action}", 303)

    async def report_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self._sign_in_first(request)
        managers = self.policy.policy.groups.get("managers")
        if managers is not None and session.email not in managers:
            return self.error(
                403,
                "Reports are for managers",
                "The policy's `managers` group lists who may read the weekly report.",
                session,
            )
        from bot.analytics import render as rendering
        from bot.analytics.report import Week, schedule_zone, weekly

        zone = schedule_zone(self.policy)
        now = self.service.clock.now()
        raw = request.query_params.get("week")
        try:
            week = Week.parse(raw[:10], zone) if raw else Week.last_complete(now, zone)
        except ValueError as exc:
            return self.error(400, "No such week", str(exc), session)
        report = await weekly(self.service.engine, self.policy, week, now)
        images = await asyncio.to_thread(rendering.charts, report)
        charts = [
            (name, "data:image/png;base64," + base64.b64encode(data).decode())
            for name, data in images
        ]
        return self.render(
            "report.html",
            session=session,
            report=report,
            headline=rendering.headline(report),
            pct=rendering.pct,
            seconds=rendering.seconds,
            charts=charts,
            **self._common(request),
        )

    # -- sign-in -------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        return self.render(
            "signin.html",
            session=await self.session(request),
            sso=self.oidc is not None,
            next=_local_next(request.query_params.get("next")),
        )

    async def login_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        email = await self.sessions.link_email(token, self.service.clock.now())
        headers = {"Referrer-Policy": "no-referrer"}
        if email is None:
            return self._bad_link(headers)
        return self.render("login.html", email=email, token=token, headers=headers)

    def _bad_link(self, headers: Mapping[str, str]) -> HTMLResponse:
        return self.render(
            "error.html",
            400,
            headers=headers,
            title="This sign-in link cannot be used",
            message=(
                "It was used already, has expired (links are good for 15 minutes, once), "
                "or was not made by this Signoff. Ask for a new one: "
                "signoff web login-link YOUR@EMAIL"
            ),
        )

    def _cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.settings.web_session_hours * 3600),
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    async def login(self, request: Request) -> Response:
        headers = {"Referrer-Policy": "no-referrer"}
        try:
            form = await self._form(request)
        except BadInput:
            return self._bad_link(headers)
        found = await self.sessions.use_link(form.get("token", ""), self.service.clock.now())
        if found is None:
            return self._bad_link(headers)
        cookie, email = found
        log.info("web: %s signed in with a one-time link", email)
        response = RedirectResponse(f"{PREFIX}/", 303)
        self._cookie(response, cookie)
        return response

    # -- single sign-on (OpenID Connect, adapters/web/oidc.py) -----------------------

    def _oidc_redirect(self) -> str:
        return f"{self.base_url}{PREFIX}/oidc/callback"

    def _oidc_cookie(self, pending: Pending, after: str, at: float) -> str:
        body = _b64(json.dumps({"p": pending.dump(), "n": after, "t": at}).encode())
        mac = hmac.new(self._oidc_key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def _oidc_pending(self, cookie: str | None, now: float) -> tuple[Pending, str]:
        """The sign-in attempt this browser started, from its signed cookie."""
        if not cookie:
            raise OidcError(
                "this browser has no sign-in attempt under way (it was started in another "
                "browser, more than 10 minutes ago, or cookies are blocked); start again"
            )
        body, _, mac = cookie.partition(".")
        try:
            expected = hmac.new(self._oidc_key, body.encode(), hashlib.sha256).digest()
            genuine = len(cookie) <= OIDC_COOKIE_MAX and hmac.compare_digest(_unb64(mac), expected)
            data = json.loads(_unb64(body)) if genuine else None
        except (ValueError, TypeError):
            data = None
        if not (
            isinstance(data, dict)
            and isinstance(data.get("p"), str)
            and isinstance(data.get("n"), str)
            and isinstance(data.get("t"), (int, float))
        ):
            raise OidcError(
                "this browser's sign-in attempt could not be read back (it is damaged or "
                "not from this Signoff); start signing in again"
            )
        if not 0 <= now - float(data["t"]) <= OIDC_COOKIE_SECONDS:
            raise OidcError(
                "this sign-in attempt took longer than 10 minutes; start signing in again"
            )
        return Pending.load(data["p"]), _local_next(data["n"])

    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return self.error(404, "No single sign-on here", "Sign in with a one-time link.")
        after = _local_next(request.query_params.get("next"))
        try:
            url, pending = await self.oidc.begin(self._oidc_redirect())
        except OidcError as exc:
            log.warning("web: single sign-on could not start: %s", exc)
            return self.error(502, "Single sign-on is not available", str(exc))
        now = self.service.clock.now().timestamp()
        response = RedirectResponse(url, 303, headers={"Referrer-Policy": "no-referrer"})
        response.set_cookie(
            OIDC_COOKIE,
            self._oidc_cookie(pending, after, now),
            max_age=OIDC_COOKIE_SECONDS,
            path=f"{PREFIX}/oidc",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return self.error(404, "No single sign-on here", "Sign in with a one-time link.")
        now = self.service.clock.now()
        params = {k: v[:4000] for k, v in request.query_params.items()}
        try:
            pending, after = self._oidc_pending(request.cookies.get(OIDC_COOKIE), now.timestamp())
            email = await self.oidc.finish(self._oidc_redirect(), params, pending)
        except OidcError as exc:
            log.warning("web: a single sign-on was refused: %s", exc)
            response: Response = self.render(
                "error.html",
                400,
                headers={"Referrer-Policy": "no-referrer"},
                title="Single sign-on did not work",
                message=str(exc),
                again=f"{PREFIX}/oidc/start",
            )
        else:
            cookie = await self.sessions.start(email, "oidc", now)
            log.info("web: %s signed in with single sign-on", email)
            response = RedirectResponse(after, 303, headers={"Referrer-Policy": "no-referrer"})
            self._cookie(response, cookie)
        # one attempt, one answer: whatever happened, this attempt is over
        response.delete_cookie(OIDC_COOKIE, path=f"{PREFIX}/oidc")
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        response = RedirectResponse(f"{PREFIX}/signin", 303)
        if session is None:
            return response
        try:
            form = await self._form(request)
        except BadInput as exc:
            return self.error(400, "That form could not be read", str(exc), session)
        if not self._csrf_ok(session, form, request):
            return self.error(403, "This form has expired", "Reload the page and try again.")
        await self.sessions.end(request.cookies.get(COOKIE, ""))
        response.delete_cookie(COOKIE, path=PREFIX)
        return response


def _parsed_args(typed: Mapping[str, str]) -> dict[str, Any]:
    """The edit form's arguments, each parsed from its JSON; BadInput naming the one
    that is not JSON."""
    edits: dict[str, Any] = {}
    for name, text in typed.items():
        try:
            edits[name] = json.loads(text)
        except ValueError:
            raise BadInput(
                f'{name[:64]!r} is not JSON: put text in double quotes ("like this"); '
                "numbers, true, false and null as they are."
            ) from None
    return edits


def _oidc_client(settings: Settings) -> tuple[OidcClient, bytes]:
    """The OIDC client the settings ask for, and the key that signs the sign-in cookie;
    `ConfigError` naming what is missing or wrong."""
    issuer = (settings.oidc_issuer or "").strip().rstrip("/")
    client_id = (settings.oidc_client_id or "").strip()
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    missing = [
        name
        for name, value in (
            ("SIGNOFF_OIDC_CLIENT_ID", client_id),
            ("SIGNOFF_OIDC_CLIENT_SECRET", secret),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"SIGNOFF_OIDC_ISSUER is set, so single sign-on needs {' and '.join(missing)} "
            "too: the client id and secret your identity provider gave this Signoff"
        )
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(
            f"SIGNOFF_OIDC_ISSUER must be an https:// URL (plain http only on this machine, "
            f"for testing), not {issuer[:100]!r}"
        )
    if parts.query or parts.fragment or not parts.hostname:
        raise ConfigError(
            f"SIGNOFF_OIDC_ISSUER must be the provider's issuer URL, with no query or "
            f"fragment, not {issuer[:100]!r}"
        )
    key = hmac.new(secret.encode(), b"signoff-web-oidc-cookie", hashlib.sha256).digest()
    return OidcClient(issuer, client_id, secret), key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _local_next(value: str | None) -> str:
    """Where to go after signing in: a path of the inbox, never another site."""
    if value and value.startswith(f"{PREFIX}/") and "//" not in value and "\\" not in value:
        return value[:500]
    return f"{PREFIX}/"
