"""The intake's HTTP application: receive the portal's pushes, store them, say so.

    app = create_app(settings, engine)            # the store must be migrated
    POST {base}[/{token}]/postPoll                # a poll registration
    POST {base}[/{token}]/postAnswer              # an answer
    GET  {base}[/{token}]/health                  # the store answers
    GET  /docs, /openapi.json                     # the payloads' schema

A packet is stored in one transaction *before* the reply, so a 200 with
``"is_successful": true`` means it is on disk; the portal re-sends anything else.
Nothing here talks to the CRM except the optional employee check on postPoll.

Replies (always JSON, never a stack trace):

    200  stored (new, edited or repeated)            is_successful true
    400  cannot be stored: not JSON, not an object, no ids, ids not integers
    403  the sender's address is not in INTAKE_ALLOWED_NETWORKS
    404  unknown path (also a wrong INTAKE_TOKEN: nothing tells it apart)
    413  bigger than INTAKE_MAX_BODY
    422  employee check: the poll's employee is unknown or inactive in the CRM
    503  the store is unavailable: not stored, the portal retries later
    500  anything unexpected: not stored, the portal retries later
"""
from __future__ import annotations

import hmac
import ipaddress
from typing import Any

import anyio
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic.json_schema import models_json_schema
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import StoreError, UpstreamError
from core.redact import register_secret
from intake.models import IntakeReply, PostAnswer, PostPoll
from intake.packets import Refusal, answer_packet, poll_packet
from intake.writer import GroupWriter
from storage.inbox import InboxStore, StoreOutcome

ENDPOINTS = ("postPoll", "postAnswer")

_STORED = {
    ("answer", "new"): ("Ответ сохранён",
                        "Ответ {answer_id} на опрос {poll_id} принят и будет передан в CRM при следующей синхронизации."),
    ("answer", "edit"): ("Изменённый ответ сохранён",
                         "Ответ {answer_id} уже был получен; новая версия сохранена и заменит прежнюю в CRM при "
                         "следующей синхронизации."),
    ("answer", "repeat"): ("Ответ уже был получен",
                           "Ответ {answer_id} уже сохранён в том же виде; повторная доставка ничего не меняет."),
    ("poll", "new"): ("Опрос зарегистрирован", "Опрос {poll_id} зарегистрирован; форма опроса появится в CRM при "
                                               "следующей синхронизации."),
    ("poll", "edit"): ("Изменения опроса сохранены", "Опрос {poll_id} уже был зарегистрирован; новые название или "
                                                     "ответственный сохранены."),
    ("poll", "repeat"): ("Опрос уже зарегистрирован", "Опрос {poll_id} уже зарегистрирован в том же виде."),
}
_ACTIVE = (True, "Y", "1", 1, "true")


def _reply(status: int, *, ok: bool, message: str, description: str = "", reason: str | None = None,
           poll_id: Any = None, answer_id: Any = None) -> JSONResponse:
    body = {"status": "success" if ok else "error", "message": message, "description": description,
            "poll_id": poll_id, "answer_id": answer_id, "is_successful": ok}
    if reason is not None:
        body["reason"] = reason
    return JSONResponse(body, status_code=status)


def NOT_FOUND() -> JSONResponse:  # noqa: N802 - reads as the constant reply it is
    return _reply(404, ok=False, reason="not_found", message="Адрес не найден",
                  description="Проверьте базовый URL интеграции в настройках портала.")


def _refused(refusal: Refusal) -> JSONResponse:
    return _reply(refusal.status, ok=False, message=refusal.message, description=refusal.description,
                  reason=refusal.reason, poll_id=refusal.poll_id, answer_id=refusal.answer_id)


class Intake:
    """The application's state: settings, the store, the CRM client for the employee check."""

    def __init__(self, settings: Any, engine: Engine, crm: Any = None) -> None:
        self.settings = settings
        self.store = InboxStore(engine)
        self.engine = engine
        self.crm = crm
        self.max_body = settings.intake_max_body
        self.token = settings.intake_token.get_secret_value() if settings.intake_token is not None else None
        self.allowed = list(settings.intake_allowed_networks)
        self.proxies = list(settings.intake_trusted_proxies)
        # One writer thread with group commit (intake/writer.py): the inbox's lock serialises
        # writes anyway, and queueing them here instead of in SQLite's busy handler (which
        # sleeps in steps) keeps latency flat.
        self.writer = GroupWriter(self.store)
        # Employee checks wait for the CRM; they get their own threads so a slow CRM never
        # holds up the storing of answers.
        self.checks = anyio.CapacityLimiter(4)

    # -- who may deliver ------------------------------------------------------------

    def client_address(self, request: Request) -> str | None:
        """The sender: the peer, or the nearest untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
        peer = request.client.host if request.client else None
        if peer is None or not self.proxies or not self._in(peer, self.proxies):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
        for hop in reversed(hops):  # right to left: the left part is whatever the client claimed
            if not self._in(hop, self.proxies):
                return hop
        return hops[0] if hops else peer

    @staticmethod
    def _in(address: str, networks: list[Any]) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in networks)

    def allowed_address(self, address: str | None) -> bool:
        return not self.allowed or (address is not None and self._in(address, self.allowed))

    def token_matches(self, given: str | None) -> bool:
        if self.token is None:
            return given is None
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    # -- the work -----------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _too_large(int(declared), self.max_body)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:  # chunked or lying Content-Length: stop reading at the limit
                raise _too_large(size, self.max_body, at_least=True)
            chunks.append(chunk)
        return b"".join(chunks)

    async def write(self, op: str, **kwargs: Any) -> Any:
        try:
            return await self.writer.write(op, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # a database error in this packet's savepoint alone
            raise StoreError(f"the store refused the packet: {type(exc).__name__}") from exc

    async def note_refusal(self, endpoint: str, refusal: Refusal, size: int, remote: str | None) -> None:
        logger.warning("intake {}: refused a packet from {} ({} bytes): {} — {}", endpoint, remote or "?", size,
                       refusal.reason, refusal.message)
        try:
            await self.write("record_refusal", endpoint=endpoint, reason=refusal.reason,
                             detail=refusal.message, size=size, remote=remote, poll_id=refusal.poll_id,
                             answer_id=refusal.answer_id)
        except StoreError as exc:
            logger.error("intake: could not record the refusal: {}", exc)

    async def check_employee(self, email: Any) -> tuple[Refusal | None, str | None]:
        """(refusal, note): refuse an unknown or inactive employee; only note a CRM that does not answer."""
        if not isinstance(email, str) or "@" not in email:
            return Refusal(422, "employee_missing", "В регистрации опроса нет e-mail ответственного сотрудника",
                           "Укажите сотрудника опроса; приёмник проверяет, что он есть в CRM и активен."), None
        timeout = self.settings.intake_check_timeout_s
        try:
            with anyio.fail_after(timeout):
                result = await to_thread.run_sync(
                    lambda: self.crm.call("user.get", {"FILTER": {"EMAIL": email.strip()}}),
                    limiter=self.checks, abandon_on_cancel=True)
        except TimeoutError:
            return None, f"employee check skipped: the CRM did not answer user.get within {timeout:g} s"
        except UpstreamError as exc:
            return None, f"employee check skipped: the CRM could not be asked ({exc})"
        except Exception as exc:  # noqa: BLE001 - a CRM we cannot ask never costs the portal its registration
            return None, f"employee check skipped: {type(exc).__name__}: {exc}"
        rows = getattr(result, "result", result)
        rows = [r for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict)]
        if not rows:
            return Refusal(422, "employee_unknown", f"Сотрудник {email} не найден в CRM",
                           "Укажите в опросе сотрудника, у которого есть учётная запись в CRM, или попросите "
                           "администратора CRM создать её; затем отправьте регистрацию снова."), None
        if not any(r.get("ACTIVE") in _ACTIVE for r in rows):
            return Refusal(422, "employee_inactive", f"Учётная запись сотрудника {email} в CRM отключена",
                           "Назначьте опросу действующего сотрудника и отправьте регистрацию снова."), None
        return None, None

    async def deliver(self, request: Request, endpoint: str, token: str | None) -> JSONResponse:
        remote = self.client_address(request)
        size = int(request.headers.get("content-length") or 0) if (
            request.headers.get("content-length") or "").isdigit() else 0
        try:
            if not self.token_matches(token):
                await self.note_refusal(endpoint, Refusal(404, "wrong_token", "wrong INTAKE_TOKEN in the path"),
                                        size, remote)
                return NOT_FOUND()  # the same reply as any unknown path: a guessed token learns nothing
            if not self.allowed_address(remote):
                raise Refusal(403, "forbidden_network", f"Адрес отправителя {remote} не входит в разрешённые сети",
                              "Доставка разрешена только из сетей портала; обратитесь к администратору "
                              "интеграции CRM (INTAKE_ALLOWED_NETWORKS).")
            raw = await self.read_body(request)
            size = len(raw)
            if endpoint == "postAnswer":
                packet = answer_packet(raw)
                outcome = await self.write("store_answer", body=packet.body, poll_id=packet.poll_id,
                                           answer_id=packet.answer_id, size=size)
                return self._stored("answer", outcome, poll_id=packet.poll_id, answer_id=packet.answer_id,
                                    remote=remote)
            poll = poll_packet(raw)
            note = None
            if self.settings.intake_check_employee:
                refusal, note = await self.check_employee(poll.employee_email)
                if refusal is not None:
                    refusal.poll_id = poll.poll_id
                    raise refusal
                if note:
                    logger.warning("intake postPoll {}: {}; the registration is accepted", poll.poll_id, note)
            outcome = await self.write("store_poll", body=poll.body, poll_id=poll.poll_id,
                                       content=poll.content, size=size, note=note)
            reply = self._stored("poll", outcome, poll_id=poll.poll_id, answer_id=None, remote=remote)
            return reply
        except Refusal as refusal:
            await self.note_refusal(endpoint, refusal, size, remote)
            return _refused(refusal)
        except StoreError as exc:
            logger.error("intake {}: not stored, the store failed: {}", endpoint, exc)
            return _reply(503, ok=False, reason="store_unavailable",
                          message="Хранилище приёмника временно недоступно; пакет не сохранён",
                          description="Повторите доставку позже.")

    def _stored(self, kind: str, outcome: StoreOutcome, *, poll_id: int, answer_id: int | None,
                remote: str | None) -> JSONResponse:
        message, description = _STORED[(kind, outcome.kind)]
        logger.info("intake: {} {} stored ({}) from {}", kind, answer_id if kind == "answer" else poll_id,
                    outcome.kind, remote or "?")
        return _reply(200, ok=True, message=message, description=description.format(poll_id=poll_id,
                                                                                   answer_id=answer_id),
                      poll_id=poll_id, answer_id=answer_id)

    async def health(self) -> JSONResponse:
        def ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                conn.rollback()
        try:
            await to_thread.run_sync(ping)
        except Exception:  # noqa: BLE001 - any failure means "not healthy", said without details
            return JSONResponse({"status": "error", "store": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok"})


def _too_large(size: int, limit: int, *, at_least: bool = False) -> Refusal:
    shown = f"более {limit}" if at_least else str(size)
    return Refusal(413, "body_too_large", f"Пакет слишком большой: {shown} байт при пределе {limit} байт",
                   "Пакет не сохранён; уменьшите его или попросите администратора интеграции увеличить "
                   "INTAKE_MAX_BODY.")


def create_app(settings: Any, engine: Engine, *, crm: Any = None) -> FastAPI:
    """The intake's FastAPI application over a migrated store.

    ``crm``: anything with Bitrix24Client's ``call(method, params)``, for the employee
    check (``INTAKE_CHECK_EMPLOYEE``); built from ``BITRIX24_WEBHOOK_URL`` when not given.
    """
    if settings.intake_check_employee and crm is None:
        from sync.clients.bitrix24 import Bitrix24Client
        timeout = settings.intake_check_timeout_s
        # One attempt within the deadline: the portal itself retries a refused registration.
        crm = Bitrix24Client(settings.bitrix24_webhook_url, timeout=timeout, max_attempts=1, max_wait_s=timeout)
    intake = Intake(settings, engine, crm)
    if intake.token is not None:
        register_secret(intake.token)
    base = settings.intake_base_path
    prefix = f"{base}/{{token}}" if intake.token is not None else base

    app = FastAPI(title="Survey intake", version="1",
                  description="Receives the university portal's postPoll and postAnswer pushes and stores them; "
                              "the sync job takes them to Bitrix24 on its schedule.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.intake = intake
    responses = {code: {"model": IntakeReply} for code in (400, 403, 404, 413, 422, 503)}

    def delivery(endpoint: str) -> Any:
        # With a token, the route declares it as a path parameter: /docs shows "{token}", never its value.
        if intake.token is None:
            async def handler(request: Request) -> JSONResponse:
                return await intake.deliver(request, endpoint, None)
        else:
            async def handler(request: Request, token: str) -> JSONResponse:  # type: ignore[misc]
                return await intake.deliver(request, endpoint, token)
        handler.__name__ = endpoint
        return handler

    for endpoint, model in (("postPoll", PostPoll), ("postAnswer", PostAnswer)):
        app.add_api_route(
            f"{prefix}/{endpoint}", delivery(endpoint), methods=["POST"], response_model=IntakeReply,
            responses=responses, summary=f"Store a {endpoint} packet",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}})

    async def health(request: Request) -> JSONResponse:
        if not intake.token_matches(request.path_params.get("token")):
            return NOT_FOUND()
        return await intake.health()
    app.add_api_route(f"{prefix}/health", health, methods=["GET"], summary="Is the store reachable?")

    app.add_middleware(_Gate, intake=intake)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return _reply(405, ok=False, reason="method_not_allowed", message="Метод не поддерживается",
                          description="Пакеты доставляются методом POST.")
        if exc.status_code == 404 and request.url.path.endswith(ENDPOINTS) and request.method == "POST":
            # Most likely the portal's base URL lacks (or has a stale) token: worth telling the operator.
            await intake.note_refusal(request.url.path.rsplit("/", 1)[-1],
                                      Refusal(404, "unknown_path", "Адрес не найден"),
                                      int(request.headers.get("content-length") or 0)
                                      if (request.headers.get("content-length") or "").isdigit() else 0,
                                      intake.client_address(request))
        if exc.status_code == 404:
            return NOT_FOUND()
        return _reply(exc.status_code, ok=False, reason="http_error", message="Запрос отклонён")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _reply(400, ok=False, reason="invalid_request", message="Некорректный запрос")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            _, defs = models_json_schema([(PostPoll, "validation"), (PostAnswer, "validation")],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]

    if intake.token is None and not intake.allowed:
        logger.warning("intake: neither INTAKE_TOKEN nor INTAKE_ALLOWED_NETWORKS is set: anyone who can reach "
                       "{} may deliver packets → set one (or both) before exposing it beyond this host", base)
    return app


class _Gate:
    """Pure ASGI middleware (starlette's BaseHTTPMiddleware costs a task and a queue per request).

    Deliveries check (and record) the network themselves; this covers /docs, health and
    the rest, and turns anything unexpected into a JSON 500 without a stack trace.
    """

    def __init__(self, app: Any, intake: Intake) -> None:
        self.app = app
        self.intake = intake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope.get("path", "")
        if not path.endswith(ENDPOINTS) and not self.intake.allowed_address(self.intake.client_address(request)):
            await _reply(403, ok=False, reason="forbidden_network", message="Доступ запрещён")(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)
        try:
            await self.app(scope, receive, tracked_send)
        except Exception:  # noqa: BLE001 - the reply never carries a stack trace; the log has it
            logger.opt(exception=True).error("intake: unexpected error on {} {}", scope.get("method"),
                                            _shown_path(path, self.intake.token))
            if not started:
                await _reply(500, ok=False, reason="internal_error",
                             message="Внутренняя ошибка приёмника; пакет не сохранён",
                             description="Повторите доставку позже.")(scope, receive, send)


def _shown_path(path: str, token: str | None) -> str:
    return path.replace(token, "***") if token else path
