"""The gateway's HTTP API: charges, refunds, fault injection and signed webhooks.

Everything lives in this process's memory: a restart forgets every charge, refund,
idempotency key and control mode. That is enough for a stand-in whose job is to let the
shop (and its tests) meet a processor that declines cards, fails, hangs, and answers
late, while never taking money twice for one idempotency key.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.shop.gateway.signing import sign

log = logging.getLogger("examples.shop.gateway")

#: The one token the processor refuses; any other token pays.
DECLINED_TOKEN = "tok_declined"
#: How long a charge or refund "talks to the card network". A real processor takes a
#: moment too, and without it concurrent duplicates would never overlap in time, so the
#: per-key lock (and a client's handling of duplicates) would go untested.
PROCESSING_DELAY_S = 0.02
#: How long ``timeout`` mode holds a call before answering 504, unless ``delay_s`` is set.
DEFAULT_TIMEOUT_DELAY_S = 30.0
#: Waits before the 2nd, 3rd... delivery attempt of a webhook: five attempts over ~20 s.
WEBHOOK_RETRY_DELAYS_S = (0.25, 1.0, 4.0, 15.0)
WEBHOOK_TIMEOUT_S = 5.0
MODES = ("ok", "fail_500", "timeout", "flaky")

Outcome = tuple[int, dict[str, Any]]


class Rejected(Exception):
    """A request answered with an error code, ``{"error": code}``."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.outcome: Outcome = (status, {"error": code})


class Fault(enum.Enum):
    """What the control mode does to one call under ``/charges``."""

    #: 500 before any work: nothing is charged or refunded.
    BEFORE = "before"
    #: The call is processed in full (a charge is recorded), then answered 500: the
    #: "charged, but the client never heard" case.
    AFTER = "after"
    #: Held for ``delay_s``, then answered 504 without any work.
    TIMEOUT = "timeout"


@dataclass
class Control:
    """The failure behaviour set through ``POST /_control``.

    ``flaky`` alternates its failures deterministically: the 1st, 3rd, 5th... fail
    before any work, the 2nd, 4th... after it. So with ``failures >= 2`` a client
    retrying one charge meets a charge recorded behind a 500, which it can only recover
    by retrying under the same idempotency key.
    """

    mode: str = "ok"
    failures: int = 0
    delay_s: float = DEFAULT_TIMEOUT_DELAY_S
    #: ``flaky`` failures injected so far: picks the kind of the next one.
    failed: int = 0

    def next_fault(self) -> Fault | None:
        """The fault for the call arriving now; counts down ``flaky``'s failures."""
        if self.mode == "fail_500":
            return Fault.BEFORE
        if self.mode == "timeout":
            return Fault.TIMEOUT
        if self.mode != "flaky":
            return None
        fault = Fault.BEFORE if self.failed % 2 == 0 else Fault.AFTER
        self.failed += 1
        self.failures -= 1
        if self.failures == 0:
            self.mode = "ok"
        return fault

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "failures": self.failures, "delay_s": self.delay_s}


@dataclass
class Refund:
    id: str
    charge_id: str
    amount_cents: int
    created: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "charge_id": self.charge_id,
            "amount_cents": self.amount_cents,
            "status": "succeeded",
            "created": self.created,
        }


@dataclass
class Charge:
    id: str
    amount_cents: int
    currency: str
    created: int
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refunded_cents(self) -> int:
        return sum(refund.amount_cents for refund in self.refunds)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": "succeeded",
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "refunded_cents": self.refunded_cents,
            "refunds": [refund.to_json() for refund in self.refunds],
            "created": self.created,
        }


@dataclass(frozen=True)
class Replay:
    """The first answer under an idempotency key, and what it was an answer to."""

    fingerprint: str
    status: int
    body: dict[str, Any]


class Webhooks:
    """Delivers signed events in background tasks, retrying with backoff.

    A charge's answer never waits for its webhook, as at a real processor; so the
    receiver may hear of a charge before, after, or without the client that made it.
    Each attempt is signed afresh, so a late retry is not rejected as stale.
    """

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event_type: str, data: dict[str, Any]) -> None:
        if not self.url or self.client is None:
            return
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "type": event_type,
            "created": int(time.time()),
            "data": data,
        }
        task = asyncio.create_task(self._deliver(self.client, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_pending(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        delays = iter(WEBHOOK_RETRY_DELAYS_S)
        attempt = 0
        while True:
            attempt += 1
            headers = {
                "Content-Type": "application/json",
                "Gateway-Signature": sign(self.secret, body, int(time.time())),
            }
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            else:
                if response.is_success:
                    log.info(
                        "webhook %s %s delivered (attempt %d)", event["type"], event["id"], attempt
                    )
                    return
                outcome = f"HTTP {response.status_code}"
            delay = next(delays, None)
            if delay is None:
                log.error(
                    "webhook %s %s abandoned after %d attempts (%s)",
                    event["type"],
                    event["id"],
                    attempt,
                    outcome,
                )
                return
            log.warning(
                "webhook %s %s attempt %d failed (%s), retrying in %ss",
                event["type"],
                event["id"],
                attempt,
                outcome,
                delay,
            )
            await asyncio.sleep(delay)


class Gateway:
    """The processor's state and its route handlers."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks
        self.control = Control()
        self.charges: dict[str, Charge] = {}
        self.replays: dict[str, Replay] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- /charges ---------------------------------------------------------------------

    async def create_charge(self, request: Request) -> Response:
        async def work() -> Outcome:
            key = _idempotency_key(request)
            if key is None:
                raise Rejected(400, "idempotency_key_required")
            body = await _json_object(request)
            amount_cents = _positive_int(body.get("amount_cents"))
            currency = _text(body.get("currency"))
            token = _text(body.get("token"))
            return await self._once(
                key, request, body, lambda: self._charge(amount_cents, currency, token)
            )

        return await self._faulty(request, work)

    async def get_charge(self, request: Request) -> Response:
        async def work() -> Outcome:
            return 200, self._charge_named(request.path_params["charge_id"]).to_json()

        return await self._faulty(request, work)

    async def create_refund(self, request: Request) -> Response:
        charge_id = request.path_params["charge_id"]

        async def work() -> Outcome:
            body = await _json_object(request, empty_ok=True)
            amount = body.get("amount_cents")
            amount_cents = None if amount is None else _positive_int(amount)
            key = _idempotency_key(request)
            if key is not None:
                return await self._once(
                    key, request, body, lambda: self._refund(charge_id, amount_cents)
                )
            await asyncio.sleep(PROCESSING_DELAY_S)
            return _run(lambda: self._refund(charge_id, amount_cents))

        return await self._faulty(request, work)

    async def _faulty(self, request: Request, work: Callable[[], Awaitable[Outcome]]) -> Response:
        """Run ``work`` under the control mode's fault for this call."""
        fault = self.control.next_fault()
        if fault is Fault.TIMEOUT:
            request.state.note = f"timeout mode: held {self.control.delay_s}s, nothing done"
            await asyncio.sleep(self.control.delay_s)
            return _error(504, "gateway_timeout")
        if fault is Fault.BEFORE:
            request.state.note = "injected 500 before processing, nothing done"
            return _error(500, "gateway_error")
        try:
            status, body = await work()
        except Rejected as exc:
            status, body = exc.outcome
        if fault is Fault.AFTER:
            request.state.note = f"processed ({status}), then injected 500"
            return _error(500, "gateway_error")
        return JSONResponse(body, status)

    async def _once(
        self, key: str, request: Request, body: dict[str, Any], run: Callable[[], Outcome]
    ) -> Outcome:
        """``run`` at most once per idempotency key; repeats get the first answer again.

        The lock makes a concurrent duplicate wait for the first call and then replay
        it, instead of charging a second time while the first is still in flight.
        """
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(
            f"{request.method} {request.url.path}\n{canonical}".encode()
        ).hexdigest()
        async with self.locks[key]:
            replay = self.replays.get(key)
            if replay is not None:
                if replay.fingerprint != fingerprint:
                    raise Rejected(422, "idempotency_key_reused")
                request.state.note = f"replayed the first answer to key {key}"
                return replay.status, replay.body
            await asyncio.sleep(PROCESSING_DELAY_S)
            status, answer = _run(run)
            self.replays[key] = Replay(fingerprint, status, answer)
            return status, answer

    def _charge(self, amount_cents: int, currency: str, token: str) -> Outcome:
        if token == DECLINED_TOKEN:
            raise Rejected(402, "card_declined")
        charge = Charge(
            id=f"ch_{secrets.token_hex(12)}",
            amount_cents=amount_cents,
            currency=currency,
            created=int(time.time()),
        )
        self.charges[charge.id] = charge
        answer = charge.to_json()
        self.webhooks.send("charge.succeeded", answer)
        return 201, answer

    def _refund(self, charge_id: str, amount_cents: int | None) -> Outcome:
        charge = self._charge_named(charge_id)
        remaining = charge.amount_cents - charge.refunded_cents
        amount = remaining if amount_cents is None else amount_cents
        if amount == 0 or amount > remaining:
            raise Rejected(422, "refund_exceeds_charge")
        refund = Refund(
            id=f"re_{secrets.token_hex(12)}",
            charge_id=charge.id,
            amount_cents=amount,
            created=int(time.time()),
        )
        charge.refunds.append(refund)
        self.webhooks.send("charge.refunded", charge.to_json())
        return 201, refund.to_json()

    def _charge_named(self, charge_id: str) -> Charge:
        charge = self.charges.get(charge_id)
        if charge is None:
            raise Rejected(404, "charge_not_found")
        return charge

    # -- test controls ------------------------------------------------------------------

    async def set_control(self, request: Request) -> Response:
        body = await _json_object(request)
        mode = body.get("mode")
        failures = body.get("failures", 0)
        delay_s = body.get("delay_s")
        if (
            mode not in MODES
            or not isinstance(failures, int)
            or isinstance(failures, bool)
            or failures < 0
            or (delay_s is not None and not _non_negative_number(delay_s))
        ):
            raise Rejected(422, "invalid_request")
        if mode == "flaky" and failures == 0:
            mode = "ok"
        self.control = Control(
            mode=mode,
            failures=failures if mode == "flaky" else 0,
            delay_s=DEFAULT_TIMEOUT_DELAY_S if delay_s is None else float(delay_s),
        )
        request.state.note = f"control {self.control.to_json()}"
        return JSONResponse(self.control.to_json())

    async def get_control(self, request: Request) -> Response:
        return JSONResponse(self.control.to_json())

    async def list_charges(self, request: Request) -> Response:
        return JSONResponse({"data": [charge.to_json() for charge in self.charges.values()]})

    async def reset(self, request: Request) -> Response:
        await self.webhooks.cancel_pending()
        self.control = Control()
        self.charges.clear()
        self.replays.clear()
        self.locks.clear()
        return Response(status_code=204)


class RequestLog:
    """One log line per request, with what the gateway did about it.

    Handlers leave a ``note`` in the request state (a fault injected, a replay), so the
    line says why a call failed or charged nothing, not only its status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            note = scope.get("state", {}).get("note")
            log.info(
                "%s %s %d %.1fms%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                f" ({note})" if note else "",
            )


def create_app(webhook_url: str, webhook_secret: str) -> Starlette:
    """The gateway; webhooks go to ``webhook_url`` (none when empty), signed with the secret."""
    gateway = Gateway(Webhooks(webhook_url, webhook_secret))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # trust_env=False: webhooks go to the configured address, never through a proxy
        # picked up from the environment.
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, trust_env=False) as client:
            gateway.webhooks.client = client
            try:
                yield
            finally:
                await gateway.webhooks.cancel_pending()

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Rejected)
        status, body = exc.outcome
        return JSONResponse(body, status)

    return Starlette(
        routes=[
            Route("/charges", gateway.create_charge, methods=["POST"]),
            Route("/charges/{charge_id}", gateway.get_charge, methods=["GET"]),
            Route("/charges/{charge_id}/refunds", gateway.create_refund, methods=["POST"]),
            Route("/_control", gateway.set_control, methods=["POST"]),
            Route("/_control", gateway.get_control, methods=["GET"]),
            Route("/_charges", gateway.list_charges, methods=["GET"]),
            Route("/_reset", gateway.reset, methods=["POST"]),
        ],
        middleware=[Middleware(RequestLog)],
        exception_handlers={Rejected: rejected},
        lifespan=lifespan,
    )


def _run(run: Callable[[], Outcome]) -> Outcome:
    try:
        return run()
    except Rejected as exc:
        return exc.outcome


def _error(status: int, code: str) -> Response:
    return JSONResponse({"error": code}, status)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key", "").strip()
    return key or None


async def _json_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and empty_ok:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Rejected(422, "invalid_request") from None
    if not isinstance(body, dict):
        raise Rejected(422, "invalid_request")
    return body


def _positive_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise Rejected(422, "invalid_request")


def _text(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise Rejected(422, "invalid_request")


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
