"""In-process and HTTP control of a running ``SurveyEmulator`` (tests, demos, chaos runs)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox.survey.clock import coerce_datetime, format_rfc3339, offset_suffix, parse_rfc3339, to_us
from sandbox.survey.protocol import ADMIN_PREFIX, FAULT_KINDS, OPERATIONS, ApiError, query_params

if TYPE_CHECKING:
    from sandbox.survey.server import SurveyEmulator


class SurveyAdmin:
    """In-process control of a running ``SurveyEmulator`` (also served under ``/_admin``).

    Timestamps may be given as aware datetimes, naive ones (taken as UTC) or RFC 3339
    strings. Edits move ``updated_at`` to the emulator clock's now (whole seconds, in
    the record's own offset) unless ``updated_at`` is given.

    Over HTTP (JSON in and out, no token; errors are 400/404 ``{"error", "message"}``)::

        GET    /_admin/state                  clock, counts, config, faults, counters
        GET    /_admin/counters               POST /_admin/counters/reset (or DELETE /_admin/counters)
        GET    /_admin/polls[?include_deleted=1]
        POST   /_admin/polls                  a poll                                   -> 201 stored poll
        POST   /_admin/polls/{id}             {"changes": {...}, "updated_at": opt} or the changes alone
        DELETE /_admin/polls/{id}
        GET    /_admin/answers[?poll_id=&visible_only=1]     the ground truth
        GET    /_admin/answers/{id}
        POST   /_admin/answers                an answer, or {"answer": {...}, "lag_s": 240} -> 201
        POST   /_admin/answers/{id}           {"changes": {...}, "updated_at": opt} or the changes alone
        DELETE /_admin/answers/{id}
        GET    /_admin/clock                  POST {"advance": seconds} | {"now": RFC 3339 | null}
        GET    /_admin/faults                 POST {"rates": {...}, "script": [...], "seed": n, "slow_s": s,
                                                    "clear": true}
        GET    /_admin/config                 POST {"latency_ms", "rate_limit_per_s", "visibility_lag_s",
                                                    "visibility_lag_mode", "cursor_ttl_s", "slow_s"}
    """

    def __init__(self, emulator: SurveyEmulator) -> None:
        self._emulator = emulator
        self._store = emulator.store
        self._clock = emulator.clock

    # Clock ----------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        return self._clock.advance(seconds)

    def set_clock(self, moment: datetime | str | None) -> datetime:
        """Freeze the clock at ``moment``; None goes back to the base (real) clock."""
        return self._clock.set(moment)

    def _stamp(self, updated_at: datetime | str | None, suffix: str) -> str:
        if isinstance(updated_at, str):
            parse_rfc3339(updated_at)
            return updated_at
        if updated_at is None:
            return format_rfc3339(self._clock.now_us() // 1_000_000 * 1_000_000, suffix)
        return format_rfc3339(to_us(coerce_datetime(updated_at)), suffix)

    # Polls ----------------------------------------------------------------------------------
    def polls(self, *, include_deleted: bool = False) -> list[dict]:
        return self._store.poll_docs(include_deleted=include_deleted)

    def add_poll(self, poll: dict) -> dict:
        """Add a poll; ``created_at``/``updated_at`` default to now, ``questions`` to []."""
        doc = dict(poll)
        now = self._stamp(None, "+03:00")
        doc.setdefault("created_at", now)
        doc.setdefault("updated_at", doc["created_at"])
        doc.setdefault("status", "active")
        doc.setdefault("questions", [])
        return self._store.put_poll(doc, new=True)

    def edit_poll(self, poll_id: int, changes: dict, updated_at: datetime | str | None = None) -> dict:
        doc = self._store.poll_doc(poll_id)
        if doc is None or not self._store.poll_exists(poll_id):
            raise KeyError(f"no poll {poll_id}")
        for key, value in changes.items():
            if key == "poll_id" and value != poll_id:
                raise ValueError("poll_id cannot change")
            if key != "updated_at":
                doc[key] = value
        doc["updated_at"] = self._stamp(updated_at, offset_suffix(doc["updated_at"]))
        return self._store.put_poll(doc, new=False)

    def delete_poll(self, poll_id: int) -> None:
        """The poll disappears from the listing; its answers and the answers' URLs give 404."""
        self._store.delete_poll(poll_id)

    # Answers --------------------------------------------------------------------------------
    def all_answers(self, poll_id: int | None = None, *, visible_only: bool = False) -> list[dict]:
        """The ground truth: every answer of the polls not deleted, by (updated_at, answer_id).

        ``visible_only`` keeps those a client could read now (late visibility applied).
        """
        return self._store.answer_docs(poll_id, visible_at_us=self._clock.now_us() if visible_only else None)

    def answer(self, answer_id: int) -> dict | None:
        return self._store.answer_doc(answer_id)

    def add_answer(self, answer: dict, *, lag_s: float | None = None) -> dict:
        """Add an answer; ``answer_id`` defaults to a fresh id, timestamps to now.

        ``lag_s`` overrides the visibility lag of this one answer (e.g. a late arrival).
        """
        doc = dict(answer)
        if "answer_id" not in doc:
            doc["answer_id"] = self._store.next_answer_id()
        now = self._stamp(None, "+03:00")
        doc.setdefault("created_at", now)
        doc.setdefault("updated_at", doc["created_at"])
        doc.setdefault("answers", [])
        return self._store.put_answer(doc, new=True, lag_s=lag_s)

    def edit_answer(self, answer_id: int, changes: dict, updated_at: datetime | str | None = None) -> dict:
        """Apply ``changes`` (some top-level keys, or a full answer) and move ``updated_at``.

        ``changes["answers"]`` may be a list (replaces all items) or a dict ``{code: value}``
        (replaces or appends those items). ``utm``/``cookies``/``meta`` set to None are removed.
        """
        doc = self._store.answer_doc(answer_id)
        if doc is None:
            raise KeyError(f"no answer {answer_id}")
        for key, value in changes.items():
            if key in ("answer_id", "poll_id"):
                if value != doc[key]:
                    raise ValueError(f"{key} of answer {answer_id} cannot change")
            elif key == "updated_at":
                continue  # an edit always moves it: to ``updated_at`` if given, else to now
            elif key == "answers" and isinstance(value, dict):
                items = [dict(item) for item in doc["answers"]]
                for code, new_value in value.items():
                    match = next((item for item in items if item["code"] == code), None)
                    if match is None:
                        items.append({"code": code, "value": new_value})
                    else:
                        match["value"] = new_value
                doc["answers"] = items
            elif value is None and key in ("utm", "cookies", "meta"):
                doc.pop(key, None)
            else:
                doc[key] = value
        doc["updated_at"] = self._stamp(updated_at, offset_suffix(doc["updated_at"]))
        return self._store.put_answer(doc, new=False)

    def delete_answer(self, answer_id: int) -> None:
        self._store.delete_answer(answer_id)


    # Faults, limits, counters ---------------------------------------------------------------
    def set_faults(self, *, rates: dict[str, float] | None = None, script: list[dict] | None = None,
                   seed: int | None = None, slow_s: float | None = None) -> dict:
        """Replace fault rates and/or script (see ``FAULT_KINDS``); returns the injector's snapshot.

        A script entry is ``{"kind": ..., "times": n, "method": operationId or None}``.
        """
        named = {*(rates or {}), *(entry.get("kind") for entry in script or [])}
        unknown = sorted(named - set(FAULT_KINDS), key=str)
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        for entry in script or []:
            if entry.get("method") not in (None, *OPERATIONS):
                raise ValueError(f"script method must be one of {OPERATIONS}, got {entry.get('method')!r}")
        self._emulator.faults.configure(rates=rates, script=script, seed=seed)
        if slow_s is not None:
            self._emulator.slow_s = float(slow_s)
        return self.faults()

    def clear_faults(self) -> dict:
        self._emulator.faults.clear()
        return self.faults()

    def faults(self) -> dict:
        return {**self._emulator.faults.snapshot(), "slow_s": self._emulator.slow_s, "kinds": list(FAULT_KINDS)}

    def configure(self, *, latency_ms: float | None = None, rate_limit_per_s: float | None = None,
                  visibility_lag_s: float | None = None, visibility_lag_mode: str | None = None,
                  cursor_ttl_s: float | None = None, slow_s: float | None = None) -> dict:
        """Change settings of the running emulator (None leaves one as is; rate 0 disables)."""
        emulator = self._emulator
        self._store.configure_visibility(lag_s=visibility_lag_s, mode=visibility_lag_mode)
        if latency_ms is not None:
            emulator.latency_ms = float(latency_ms)
        if rate_limit_per_s is not None:
            emulator._limiter.set_rate(rate_limit_per_s)
        if cursor_ttl_s is not None:
            emulator.cursor_ttl_s = float(cursor_ttl_s)
        if slow_s is not None:
            emulator.slow_s = float(slow_s)
        return self.config()

    def config(self) -> dict:
        emulator = self._emulator
        return {"latency_ms": emulator.latency_ms, "rate_limit_per_s": emulator._limiter.rate,
                "visibility_lag_s": self._store.visibility_lag_s,
                "visibility_lag_mode": self._store.visibility_lag_mode,
                "cursor_ttl_s": emulator.cursor_ttl_s, "slow_s": emulator.slow_s}

    def counters(self) -> dict:
        """Requests per operation, responses per status (``dropped`` for cut connections), faults fired."""
        return self._emulator.counters()

    def reset_counters(self) -> None:
        self._emulator.reset_counters()

    def state(self) -> dict:
        now = self._clock.now()
        return {
            "base_url": self._emulator.base_url,
            "now": format_rfc3339(to_us(now)),
            "clock_frozen": self._clock.frozen,
            "polls": len(self._store.poll_docs()),
            "answers": self._store.count_answers(),
            "config": self.config(),
            "faults": self.faults(),
            "counters": self.counters(),
        }

    # Over HTTP ------------------------------------------------------------------------------
    def _http(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            raise ApiError(400, "bad_request", "admin request body must be JSON") from None
        params = query_params(query)
        segments = [segment for segment in path.split("/") if segment]
        try:
            return self._route(method, segments, params, payload)
        except KeyError as error:
            raise ApiError(404, "not_found", str(error.args[0]) if error.args else "not found") from None
        except (ValueError, TypeError) as error:
            raise ApiError(400, "bad_request", str(error)) from None

    def _route(self, method: str, segments: list[str], params: dict[str, str], payload: Any) -> tuple[int, Any]:
        route = (method, *segments[:1])
        tail = segments[1:]
        ident = int(tail[0]) if tail and tail[0].isdigit() else None
        if route == ("GET", "state") and not tail:
            return 200, self.state()
        if route == ("GET", "counters") and not tail:
            return 200, self.counters()
        if (route == ("POST", "counters") and tail == ["reset"]) or (route == ("DELETE", "counters") and not tail):
            self.reset_counters()
            return 200, self.counters()
        if route == ("GET", "polls") and not tail:
            return 200, self.polls(include_deleted=params.get("include_deleted") in ("1", "true"))
        if route == ("POST", "polls") and not tail:
            return 201, self.add_poll(_object(payload))
        if route == ("POST", "polls") and ident is not None:
            payload = _object(payload)
            return 200, self.edit_poll(ident, _object(payload.get("changes", payload)), payload.get("updated_at")
                                       if "changes" in payload else None)
        if route == ("DELETE", "polls") and ident is not None:
            self.delete_poll(ident)
            return 200, {"deleted": ident}
        if route == ("GET", "answers") and not tail:
            poll_id = params.get("poll_id")
            return 200, self.all_answers(int(poll_id) if poll_id else None,
                                         visible_only=params.get("visible_only") in ("1", "true"))
        if route == ("GET", "answers") and ident is not None:
            answer = self.answer(ident)
            if answer is None:
                raise KeyError(f"no answer {ident}")
            return 200, answer
        if route == ("POST", "answers") and not tail:
            payload = _object(payload)
            if isinstance(payload.get("answer"), dict):
                return 201, self.add_answer(payload["answer"], lag_s=payload.get("lag_s"))
            return 201, self.add_answer(payload)
        if route == ("POST", "answers") and ident is not None:
            payload = _object(payload)
            if "changes" in payload:
                return 200, self.edit_answer(ident, _object(payload["changes"]), payload.get("updated_at"))
            return 200, self.edit_answer(ident, payload)
        if route == ("DELETE", "answers") and ident is not None:
            self.delete_answer(ident)
            return 200, {"deleted": ident}
        if route == ("POST", "clock") and not tail:
            payload = _object(payload)
            if "advance" in payload:
                self.advance_clock(float(payload["advance"]))
            elif "now" in payload:
                self.set_clock(payload["now"])
            else:
                raise ValueError('clock wants {"advance": seconds} or {"now": RFC 3339 | null}')
            return 200, {"now": format_rfc3339(to_us(self.now())), "frozen": self._clock.frozen}
        if route == ("GET", "clock") and not tail:
            return 200, {"now": format_rfc3339(to_us(self.now())), "frozen": self._clock.frozen}
        if route == ("GET", "faults") and not tail:
            return 200, self.faults()
        if route == ("POST", "faults") and not tail:
            payload = _object(payload)
            if payload.get("clear"):
                self.clear_faults()
            return 200, self.set_faults(rates=payload.get("rates"), script=payload.get("script"),
                                        seed=payload.get("seed"), slow_s=payload.get("slow_s"))
        if route == ("GET", "config") and not tail:
            return 200, self.config()
        if route == ("POST", "config") and not tail:
            return 200, self.configure(**_object(payload))
        raise KeyError(f"no admin endpoint {method} {ADMIN_PREFIX}/{'/'.join(segments)}")


def _object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload
