"""Staging answers and moving them through pending → in_flight → pushed | failed | needs_attention."""
from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import event

from storage.ledger import Ledger, PushedResult, StageCounts, content_hash
from tests.storage.conftest import T0, answer


def stage(ledger: Ledger, *answers: dict, watermark=None, run_id: str = "run-1") -> StageCounts:
    return ledger.stage_answers(answers=list(answers), watermark=watermark, run_id=run_id)


def push(ledger: Ledger, answer_id: int, *, contact_id=7, deal_ids=None, problems=()) -> None:
    row = ledger.get_answer(answer_id)
    ledger.mark_in_flight(answer_ids=[answer_id], run_id="run-push")
    ledger.mark_pushed(
        results=[
            PushedResult(
                answer_id=answer_id,
                contact_id=contact_id,
                deal_ids={"robotics": 11} if deal_ids is None else deal_ids,
                pushed_hash=row.content_hash,
                problems=list(problems),
            )
        ]
    )


def test_content_hash_is_stable_and_ignores_key_order():
    a = {"b": 1, "a": {"y": "Иван", "x": [1, 2]}}
    b = {"a": {"x": [1, 2], "y": "Иван"}, "b": 1}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "b": 2})
    assert len(content_hash(a)) == 64


def test_content_hash_of_python_and_json_mode_dumps_agree():
    assert content_hash({"at": T0}) == content_hash({"at": "2025-09-01T10:00:00Z"})


def test_new_answer_is_pending(ledger):
    with freeze_time("2026-11-27T03:00:00Z"):
        counts = stage(ledger, answer(1), run_id="run-a")
    assert counts == StageCounts(new=1, changed=0, unchanged=0)
    row = ledger.get_answer(1)
    assert row.status == "pending"
    assert row.poll_id == 1
    assert row.updated_at == T0
    assert row.payload == answer(1)
    assert row.content_hash == content_hash(answer(1))
    assert row.problems == [] and row.deal_ids == {} and row.contact_id is None
    assert row.attempts == 0 and row.run_id == "run-a"
    assert row.first_seen_at.isoformat() == "2026-11-27T03:00:00+00:00"


def test_same_content_again_changes_nothing(ledger):
    stage(ledger, answer(1), answer(2))
    push(ledger, 2)
    before = [ledger.get_answer(1), ledger.get_answer(2)]

    counts = stage(ledger, answer(1), answer(2), run_id="run-2")

    assert counts == StageCounts(new=0, changed=0, unchanged=2)
    assert [ledger.get_answer(1), ledger.get_answer(2)] == before
    assert ledger.get_answer(2).status == "pushed"


def test_same_content_leaves_needs_attention_alone(ledger):
    stage(ledger, answer(1))
    ledger.mark_needs_attention(answer_id=1, problems=[{"code": "invalid_email", "severity": "attention", "params": {}}])
    assert stage(ledger, answer(1)).unchanged == 1
    assert ledger.get_answer(1).status == "needs_attention"


def test_edit_of_pushed_answer_becomes_changed(ledger):
    stage(ledger, answer(1))
    push(ledger, 1)

    counts = stage(ledger, answer(1, minutes=5, email="new@example.com"), run_id="run-2")

    assert counts == StageCounts(new=0, changed=1, unchanged=0)
    row = ledger.get_answer(1)
    assert row.status == "changed"
    assert row.payload["answers"][0]["value"] == "new@example.com"
    assert row.updated_at == T0 + timedelta(minutes=5)
    assert row.contact_id == 7 and row.deal_ids == {"robotics": 11}  # the CRM ids stay for the update
    assert row.pushed_hash != row.content_hash
    assert row.run_id == "run-2"


@pytest.mark.parametrize("status", ["needs_attention", "failed"])
def test_edit_of_never_pushed_problem_answer_becomes_pending_with_problems_cleared(ledger, status):
    stage(ledger, answer(1))
    problems = [{"code": "invalid_email", "severity": "attention", "params": {"value": "x@"}}]
    if status == "failed":
        ledger.mark_failed(answer_id=1, error="400 bad email", retryable=False, problems=problems)
    else:
        ledger.mark_needs_attention(answer_id=1, problems=problems)

    stage(ledger, answer(1, email="fixed@example.com"))

    row = ledger.get_answer(1)
    assert row.status == "pending"
    assert row.problems == [] and row.error is None


def test_edit_of_pushed_then_attention_answer_becomes_changed(ledger):
    stage(ledger, answer(1))
    push(ledger, 1, problems=[{"code": "unknown_programme", "severity": "attention", "params": {"name": "X"}}])
    assert ledger.get_answer(1).status == "needs_attention"

    stage(ledger, answer(1, email="fixed@example.com"))

    row = ledger.get_answer(1)
    assert row.status == "changed" and row.problems == []


def test_edit_of_pending_answer_stays_pending(ledger):
    stage(ledger, answer(1))
    assert stage(ledger, answer(1, email="other@example.com")).changed == 1
    assert ledger.get_answer(1).status == "pending"


def test_edit_while_in_flight_keeps_in_flight_but_updates_content(ledger):
    stage(ledger, answer(1))
    ledger.mark_in_flight(answer_ids=[1], run_id="run-1")

    stage(ledger, answer(1, email="late-edit@example.com"))

    row = ledger.get_answer(1)
    assert row.status == "in_flight"
    assert row.payload["answers"][0]["value"] == "late-edit@example.com"
    assert row.content_hash == content_hash(answer(1, email="late-edit@example.com"))


def test_push_of_old_content_after_an_edit_in_flight_leaves_it_changed(ledger):
    stage(ledger, answer(1))
    old_hash = ledger.get_answer(1).content_hash
    ledger.mark_in_flight(answer_ids=[1], run_id="run-1")
    stage(ledger, answer(1, email="late-edit@example.com"))

    ledger.mark_pushed(results=[PushedResult(answer_id=1, contact_id=7, deal_ids={"a": 1}, pushed_hash=old_hash)])

    row = ledger.get_answer(1)
    assert row.status == "changed"  # the newer content still has to go
    assert row.pushed_hash == old_hash and row.contact_id == 7


def test_same_answer_twice_in_one_call_counts_once_and_keeps_the_newest(ledger):
    counts = stage(ledger, answer(1, minutes=3, email="newer@example.com"), answer(1, minutes=1))
    assert counts == StageCounts(new=1)
    assert ledger.get_answer(1).payload["answers"][0]["value"] == "newer@example.com"


def test_stage_accepts_answer_models(ledger):
    from sync.source.models import Answer

    model = Answer.model_validate(answer(5))
    assert stage(ledger, model.model_dump(mode="json")).new == 1
    assert ledger.get_answer(5).content_hash == content_hash(model.model_dump(mode="json"))


def test_stage_refuses_an_answer_without_aware_updated_at(ledger):
    bad = answer(1)
    bad["updated_at"] = "2025-09-01T10:00:00"  # no offset: which instant is it?
    with pytest.raises(ValueError, match="aware 'updated_at'"):
        stage(ledger, bad)
    assert ledger.get_answer(1) is None


def test_mark_pushed_saves_crm_ids_and_attempts(ledger):
    stage(ledger, answer(1), answer(2))
    with freeze_time("2026-11-27T03:00:00Z"):
        ledger.mark_in_flight(answer_ids=[1, 2], run_id="run-9")
    row = ledger.get_answer(1)
    assert (row.status, row.attempts, row.run_id) == ("in_flight", 1, "run-9")
    assert row.last_attempt_at.isoformat() == "2026-11-27T03:00:00+00:00"

    with freeze_time("2026-11-27T03:00:05Z"):
        ledger.mark_pushed(
            results=[
                PushedResult(answer_id=1, contact_id=101, deal_ids={"robotics": 5, "art": 6}, pushed_hash=row.content_hash),
                PushedResult(
                    answer_id=2,
                    contact_id=102,
                    deal_ids={"robotics": 7},
                    pushed_hash=ledger.get_answer(2).content_hash,
                    problems=[{"code": "unknown_programme", "severity": "attention", "params": {"name": "Алхимия"}}],
                ),
            ]
        )

    one, two = ledger.answer_rows(answer_ids=[2, 1])
    assert (one.answer_id, one.status, one.contact_id, one.deal_ids) == (1, "pushed", 101, {"robotics": 5, "art": 6})
    assert one.pushed_hash == one.content_hash
    assert one.pushed_at.isoformat() == "2026-11-27T03:00:05+00:00"
    assert (two.status, two.contact_id, two.deal_ids) == ("needs_attention", 102, {"robotics": 7})
    assert two.problems == [{"code": "unknown_programme", "severity": "attention", "params": {"name": "Алхимия"}}]


def test_warning_problems_do_not_stop_pushed(ledger):
    stage(ledger, answer(1))
    push(ledger, 1, problems=[{"code": "phone_ignored", "severity": "warning", "params": {}}])
    row = ledger.get_answer(1)
    assert row.status == "pushed" and row.problems[0]["code"] == "phone_ignored"


def test_mark_failed_records_error_and_retryability(ledger):
    stage(ledger, answer(1))
    ledger.mark_in_flight(answer_ids=[1], run_id="r")
    ledger.mark_failed(answer_id=1, error="Bitrix24 answered 503", retryable=True)
    row = ledger.get_answer(1)
    assert (row.status, row.error, row.retryable, row.problems) == ("failed", "Bitrix24 answered 503", True, [])


def test_problems_given_as_models_are_stored_as_dicts(ledger):
    from pydantic import BaseModel

    class Problem(BaseModel):
        code: str
        severity: str
        params: dict

    stage(ledger, answer(1))
    ledger.mark_needs_attention(answer_id=1, problems=[Problem(code="x", severity="attention", params={"n": 1})])
    assert ledger.get_answer(1).problems == [{"code": "x", "severity": "attention", "params": {"n": 1}}]


def _offered(ledger: Ledger, **kwargs) -> list[int]:
    return [row.answer_id for chunk in ledger.answers_to_push(**kwargs) for row in chunk]


def _ledger_with_every_status(ledger: Ledger) -> None:
    stage(ledger, *(answer(i, poll_id=1 if i <= 4 else 2) for i in range(1, 8)))
    push(ledger, 2)  # 1 pending
    push(ledger, 3)
    stage(ledger, answer(3, email="edited@example.com"))  # 3 changed
    ledger.mark_in_flight(answer_ids=[4], run_id="dead-run")  # 4 in_flight
    ledger.mark_failed(answer_id=5, error="timeout", retryable=True)
    ledger.mark_failed(answer_id=6, error="400 bad phone", retryable=False)
    ledger.mark_needs_attention(answer_id=7, problems=[{"code": "invalid_email", "severity": "attention", "params": {}}])


def test_answers_to_push_offers_pending_changed_in_flight_and_retryable_failed(ledger):
    _ledger_with_every_status(ledger)
    assert _offered(ledger) == [1, 3, 4, 5]
    assert _offered(ledger, include_attention=True) == [1, 3, 4, 5, 6, 7]
    assert _offered(ledger, poll_ids=[2]) == [5]
    assert _offered(ledger, answer_ids=[7, 4, 2, 99]) == [4]
    assert _offered(ledger, answer_ids=[7, 4, 2], include_attention=True) == [4, 7]
    assert _offered(ledger, poll_ids=[]) == []


def test_needing_attention_lists_attention_and_non_retryable_failures(ledger):
    _ledger_with_every_status(ledger)
    assert [row.answer_id for row in ledger.needing_attention()] == [6, 7]
    assert [row.answer_id for row in ledger.needing_attention(limit=1)] == [6]


def test_counts_by_status_lists_every_status(ledger):
    assert ledger.counts_by_status() == {
        "pending": 0, "changed": 0, "in_flight": 0, "pushed": 0, "failed": 0, "needs_attention": 0
    }
    _ledger_with_every_status(ledger)
    assert ledger.counts_by_status() == {
        "pending": 1, "changed": 1, "in_flight": 1, "pushed": 1, "failed": 2, "needs_attention": 1
    }


def test_in_flight_answers_are_offered_for_reconciliation(ledger):
    stage(ledger, answer(1), answer(2), answer(3))
    ledger.mark_in_flight(answer_ids=[1, 2], run_id="crashed-run")
    # ... the process dies here; the next run starts:

    in_flight = ledger.in_flight_answers()
    assert [(row.answer_id, row.run_id, row.attempts) for row in in_flight] == [(1, "crashed-run", 1), (2, "crashed-run", 1)]
    offered = [row for chunk in ledger.answers_to_push() for row in chunk]
    assert [(row.answer_id, row.status) for row in offered] == [(1, "in_flight"), (2, "in_flight"), (3, "pending")]


def test_answers_to_push_streams_in_chunks(ledger, engine):
    stage(ledger, *(answer(i) for i in range(1, 2501)))
    ledger.mark_in_flight(answer_ids=range(1, 2501, 2), run_id="r")
    ledger.mark_pushed(
        results=[
            PushedResult(answer_id=row.answer_id, contact_id=1, pushed_hash=row.content_hash)
            for row in ledger.answer_rows(answer_ids=range(1, 2501, 2))
        ]
    )  # odd ids pushed, 1,250 even ones left

    selects: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM answers" in statement:
            selects.append(statement.upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        chunks = list(ledger.answers_to_push(chunk=500))
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert [len(c) for c in chunks] == [500, 500, 250]
    ids = [row.answer_id for c in chunks for row in c]
    assert ids == list(range(2, 2501, 2))
    # a bounded id query and a fetch of those rows per chunk: memory is one chunk, not the history
    assert len(selects) == 2 * len(chunks)
    assert all("LIMIT" in s for s in selects[::2])


def test_answers_to_push_memory_does_not_grow_with_rows(ledger, engine):
    import tracemalloc

    from sqlalchemy import bindparam, text

    from storage.tables import UTCDateTime

    total = 10_000
    # Generated inside the database: fast on both backends.
    with engine.begin() as conn:
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :total) "
                "INSERT INTO answers (answer_id, poll_id, updated_at, content_hash, payload, status, problems, "
                "retryable, attempts, deal_ids, first_seen_at) "
                "SELECT i, 1, :at, 'h', '{\"answers\": [{\"code\": \"email\", \"value\": \"someone@example.com\"}]}', "
                "'pending', '[]', FALSE, 0, '{}', :at FROM n"
            ).bindparams(bindparam("at", type_=UTCDateTime()), bindparam("total")),
            {"at": T0, "total": total},
        )
    seen = 0
    tracemalloc.start()
    try:
        for chunk in ledger.answers_to_push(chunk=250):
            seen += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total
    # A chunk of 250 rows needs about 1 MB; all 10,000 at once would need ~40 times that.
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB"


def test_marking_rows_between_chunks_neither_skips_nor_repeats(ledger):
    stage(ledger, *(answer(i) for i in range(1, 11)))
    seen: list[int] = []
    for chunk in ledger.answers_to_push(chunk=3):
        ids = [row.answer_id for row in chunk]
        seen += ids
        ledger.mark_in_flight(answer_ids=ids, run_id="r")
        ledger.mark_pushed(results=[PushedResult(answer_id=r.answer_id, pushed_hash=r.content_hash) for r in chunk])
    assert seen == list(range(1, 11))
    assert ledger.counts_by_status()["pushed"] == 10


def test_returned_rows_are_detached_plain_values(ledger):
    stage(ledger, answer(1))
    row = ledger.get_answer(1)
    row.status = "pushed"  # changing the value changes nothing in the store
    assert ledger.get_answer(1).status == "pending"
    assert row.model_dump()["answer_id"] == 1


def test_staging_10000_answers_takes_a_few_bulk_statements(ledger, engine):
    answers = [answer(i, poll_id=i % 5 + 1, minutes=i % 90) for i in range(1, 10_001)]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        first = stage(ledger, *answers, watermark=("answers", T0 + timedelta(minutes=89)))
        again = stage(ledger, *answers)
        for item in answers[:3000]:
            item["meta"] = {"edited": True}
        edited = stage(ledger, *answers)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert first == StageCounts(new=10_000)
    assert again == StageCounts(unchanged=10_000)
    assert edited == StageCounts(changed=3_000, unchanged=7_000)
    # per 1,000 ids: one look-up plus at most one bulk write of each kind, never one per row
    assert len(statements) < 80, len(statements)
    assert ledger.counts_by_status()["pending"] == 10_000


def test_pushed_result_takes_problem_models_and_numeric_programme_keys():
    from pydantic import BaseModel

    class Problem(BaseModel):
        code: str
        severity: str
        params: dict

    result = PushedResult(
        answer_id=1, contact_id="12", deal_ids={42: 7}, pushed_hash="h",
        problems=[Problem(code="x", severity="warning", params={})],
    )
    assert result.contact_id == 12 and result.deal_ids == {"42": 7}
    assert result.problems == [{"code": "x", "severity": "warning", "params": {}}]


def test_concurrent_writers_wait_for_each_other_instead_of_failing(ledger):
    """Two writers at once (a status command beside a run): short transactions queue, none fails."""
    import threading

    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for round_no in range(5):
                ids = range(offset + round_no * 100, offset + round_no * 100 + 100)
                stage(ledger, *(answer(i) for i in ids), watermark=("answers", T0 + timedelta(minutes=round_no)))
                ledger.mark_in_flight(answer_ids=ids, run_id=f"w{offset}")
                ledger.counts_by_status()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (1, 10_001, 20_001)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert ledger.counts_by_status()["in_flight"] == 1500
    assert ledger.get_watermark("answers") == T0 + timedelta(minutes=4)


def test_many_answers_are_marked_needing_attention_each_with_its_own_problems(ledger) -> None:
    stage(ledger, answer(1), answer(2), answer(3))
    ledger.mark_all_needing_attention({1: [{"code": "invalid_email", "severity": "attention", "params": {}}],
                                       3: [{"code": "unknown_poll", "severity": "attention",
                                            "params": {"poll_id": 9}}]})
    assert [(r.answer_id, r.status, [p["code"] for p in r.problems]) for r in ledger.answer_rows(answer_ids=[1, 2, 3])] \
        == [(1, "needs_attention", ["invalid_email"]), (2, "pending", []), (3, "needs_attention", ["unknown_poll"])]
    ledger.mark_all_needing_attention({})  # nothing to mark: no transaction at all
