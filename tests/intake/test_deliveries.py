"""Every sample delivery through HTTP into the inbox, then out of it as the sync job's models."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from core.errors import NotFoundError
from storage.inbox import InboxStore, inbox_stats
from sync.source.inbox import InboxSource
from sync.source.models import Answer, Poll
from tests.intake.conftest import sample_answers, sample_polls


def deliver_samples(intake) -> None:
    for poll in sample_polls():
        reply = intake.post("postPoll", poll)
        assert reply.status_code == 200 and reply.json()["is_successful"] is True, reply.text
    for answer in sample_answers():
        reply = intake.post("postAnswer", answer)
        assert reply.status_code == 200 and reply.json()["is_successful"] is True, reply.text


def all_answers(source: InboxSource, poll_id: int, since=None) -> list[Answer]:
    return [a for page in source.iter_answers(poll_id, since) for a in page.items]


def all_polls(source: InboxSource, since=None) -> list[Poll]:
    return [p for page in source.iter_polls(since) for p in page.items]


def test_the_reply_is_shaped_like_the_portals_examples(intake):
    reply = intake.post("postAnswer", sample_answers()[0])
    body = reply.json()
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert body == {"status": "success", "message": "Ответ сохранён", "description": body["description"],
                    "poll_id": 430131691, "answer_id": 814573981, "is_successful": True}
    assert "814573981" in body["description"]
    poll = intake.post("postPoll", sample_polls()[0]).json()
    assert poll["is_successful"] is True and poll["poll_id"] == 430131691 and poll["answer_id"] is None
    assert poll["status"] == "success" and poll["message"] == "Опрос зарегистрирован"


def test_every_sample_delivery_lands_in_the_inbox_and_reads_back_as_models(intake, engine):
    deliver_samples(intake)
    source = InboxSource(engine)

    polls = {p.poll_id: p for p in all_polls(source)}
    assert sorted(polls) == [430131691, 512004417, 607711203]  # 999000111 was never registered: not invented
    assert polls[430131691].poll_name == "Опрос абитуриентов 2025"
    assert polls[430131691].poll_language == "ru" and polls[430131691].employee_email == "m.ivanova@hse.ru"
    assert polls[607711203].poll_name == "Open Day registration" and polls[607711203].poll_language == "en"
    assert polls[512004417].employee_email == "left.company@hse.ru"  # extras user_id/name kept, ignored
    assert polls[430131691].created_at == polls[430131691].updated_at
    assert polls[430131691].updated_at.tzinfo is not None

    assert source.answer_poll_ids() == [430131691, 512004417, 607711203, 999000111]
    by_id = {a.answer_id: a for pid in source.answer_poll_ids() for a in all_answers(source, pid)}
    assert sorted(by_id) == list(range(814573981, 814573992))

    first = by_id[814573981]
    assert first.poll_id == 430131691
    assert first.created_at == datetime(2025, 10, 22, 11, 35, 47, 921000, tzinfo=timezone.utc)
    assert [(i.code, i.value) for i in first.answers] == [
        ("lastname", "Иванова"), ("firstname", "Мария"), ("middlename", "Сергеевна"),
        ("email", "maria.ivanova@example.ru"), ("telephone", "+7 910 406-16-52"),
        ("educational_program_1", ["Цифровой юрист", "Античность"]),
        ("additionalfield1", "Учащийся 9-10 классов"), ("additionalfield3", "Москва"), ("hse_school", "52")]
    assert first.utm == {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "bachelor-2025",
                         "utm_term": "", "utm_content": ""}
    assert first.cookies == {"tracking": "ZEsUBF/Yq9OBi6j1G3IiAg", "_ga": "GA1.2.564819297.1608023318",
                             "_ym_uid": "1607603521955414288", "roistat_visit": "8467460"}
    assert first.meta == {"url": "https://ba.hse.ru/polls/430131691.html", "ip": "185.117.121.169",
                          "date": "2025-10-22 14:35", "timeZone": "Europe/Moscow",
                          "mailingListSubscription": True, "form_kind": 2, "gid": None}
    assert first.ignored == []

    raw = {a["header_data"]["answer_id"]: a for a in sample_answers()}
    for answer_id, answer in by_id.items():
        header = raw[answer_id]["header_data"]
        assert answer.poll_id == header["poll_id"]
        assert [i.code for i in answer.answers] == list(raw[answer_id]["data"])
        assert [i.value for i in answer.answers] == list(raw[answer_id]["data"].values())
        assert answer.utm == (header["analytics"].get("params") or {})
        assert answer.cookies == (header["analytics"].get("cookies") or {})

    orphan = by_id[814573991]
    assert orphan.poll_id == 999000111 and orphan.value_of("email")
    # The models dump as the ledger stores them (JSON mode) without loss.
    assert Answer.model_validate(first.model_dump(mode="json")) == first


def test_updated_at_follows_storage_order_and_watermarks_find_only_what_is_newer(intake, engine):
    deliver_samples(intake)
    source = InboxSource(engine, page_size=2)
    answers = all_answers(source, 430131691)
    assert [a.answer_id for a in answers] == [814573981, 814573982, 814573983, 814573984, 814573990]
    stamps = [a.updated_at for a in answers]
    assert stamps == sorted(stamps)
    # A watermark at the fourth: the fourth (>=) and the later ones only.
    assert [a.answer_id for a in all_answers(source, 430131691, stamps[3])] == [814573984, 814573990]
    assert all_answers(source, 430131691, stamps[-1] + timedelta(seconds=1)) == []
    assert all_answers(source, 123456789) == []  # a poll id nobody answered: empty, not an error


def test_redelivery_of_an_identical_packet_stores_nothing_new(intake, engine):
    deliver_samples(intake)
    before = InboxSource(engine)
    first = all_answers(before, 430131691)
    again = intake.post("postAnswer", sample_answers()[0])
    assert again.status_code == 200 and again.json()["is_successful"] is True
    assert again.json()["message"] == "Ответ уже был получен"
    assert intake.post("postPoll", sample_polls()[0]).json()["message"] == "Опрос уже зарегистрирован"
    assert all_answers(InboxSource(engine), 430131691) == first
    versions = InboxStore(engine).answer_versions(answer_id=814573981)
    assert len(versions) == 1 and versions[0].deliveries == 2
    stats = inbox_stats(engine)
    assert stats["answers"] == 11 and stats["answer_versions"] == 11 and stats["redeliveries"] == 2


def test_same_answer_id_with_different_content_is_an_edit(intake, engine):
    deliver_samples(intake)
    source = InboxSource(engine)
    old = source.get_answer(430131691, 814573981)
    edited = copy.deepcopy(sample_answers()[0])
    edited["data"]["telephone"] = "+7 999 000-00-01"
    reply = intake.post("postAnswer", edited)
    assert reply.json()["is_successful"] is True and reply.json()["message"] == "Изменённый ответ сохранён"
    new = source.get_answer(430131691, 814573981)
    assert new.value_of("telephone") == "+7 999 000-00-01"
    assert new.updated_at > old.updated_at and new.created_at == old.created_at
    # Listed once, as its newest version, and found again from the old watermark.
    listed = [a for a in all_answers(source, 430131691, old.updated_at) if a.answer_id == 814573981]
    assert listed == [new]
    assert len(InboxStore(engine).answer_versions(answer_id=814573981)) == 2
    # Back to the first content: that is an edit too (the newest version is what counts).
    assert intake.post("postAnswer", sample_answers()[0]).json()["message"] == "Изменённый ответ сохранён"
    assert source.get_answer(430131691, 814573981).value_of("telephone") == "+7 910 406-16-52"


def test_repeated_poll_registration_is_accepted_and_a_changed_name_or_employee_is_a_new_version(intake, engine):
    poll = sample_polls()[0]
    assert intake.post("postPoll", poll).json()["message"] == "Опрос зарегистрирован"
    assert intake.post("postPoll", {**poll, "user_id": 5}).json()["message"] == "Опрос уже зарегистрирован"
    renamed = intake.post("postPoll", {**poll, "poll_name": "Опрос абитуриентов 2026"})
    assert renamed.json()["message"] == "Изменения опроса сохранены"
    moved = intake.post("postPoll", {**poll, "poll_name": "Опрос абитуриентов 2026", "employee_email": "a@hse.ru"})
    assert moved.json()["message"] == "Изменения опроса сохранены"
    assert len(InboxStore(engine).poll_versions(poll_id=poll["poll_id"])) == 3
    [latest] = all_polls(InboxSource(engine))
    assert latest.poll_name == "Опрос абитуриентов 2026" and latest.employee_email == "a@hse.ru"
    assert latest.created_at < latest.updated_at


def test_old_key_names_fill_in_missing_poll_id_and_poll_name(intake, engine):
    reply = intake.post("postPoll", {"express_poll_id": 700000001, "name": "Старое имя", "poll_language": "ru",
                                     "employee_email": "admin@hse.ru"})
    assert reply.json()["is_successful"] is True and reply.json()["poll_id"] == 700000001
    [poll] = all_polls(InboxSource(engine))
    assert (poll.poll_id, poll.poll_name) == (700000001, "Старое имя")
    # When both are there, the current names win.
    intake.post("postPoll", {"poll_id": 700000002, "express_poll_id": 1, "poll_name": "Новое", "name": "Старое"})
    assert {p.poll_id: p.poll_name for p in all_polls(InboxSource(engine))}[700000002] == "Новое"


def test_content_problems_are_stored_and_left_to_the_sync_job(intake, engine):
    odd = {"header_data": {"poll_id": 5, "answer_id": 6, "create_time": "yesterday", "analytics": "n/a",
                           "form_kind": "x", "extra_header": {"nested": [1, 2]}},
           "data": {"email": None, "educational_program_1": {"weird": True}, "age": 17.5, "flag": False,
                    "list": [[1], {"a": None}], "broken": "\ud800"},
           "unexpected_top_level": 1}
    reply = intake.post("postAnswer", odd)
    assert reply.status_code == 200 and reply.json()["is_successful"] is True
    answer = InboxSource(engine).get_answer(5, 6)
    assert [i.code for i in answer.answers] == ["email", "educational_program_1", "age", "flag", "list", "broken"]
    assert answer.value_of("educational_program_1") == {"weird": True} and answer.value_of("age") == 17.5
    assert answer.value_of("broken") == "\ufffd"  # a lone surrogate no store can encode
    assert {"part": "analytics", "got": "string"} in [i.model_dump() for i in answer.ignored]
    assert {"part": "created_at", "got": "string"} in [i.model_dump() for i in answer.ignored]
    assert answer.meta == {"form_kind": "x", "extra_header": {"nested": [1, 2]}}
    no_data = intake.post("postAnswer", {"header_data": {"poll_id": 5, "answer_id": 7}, "data": ["a"]})
    assert no_data.json()["is_successful"] is True
    answer = InboxSource(engine).get_answer(5, 7)
    assert answer.answers == [] and [i.model_dump() for i in answer.ignored] == [{"part": "data", "got": "list"}]


def test_get_answer_of_an_answer_never_delivered_is_not_found(intake, engine):
    deliver_samples(intake)
    source = InboxSource(engine)
    with pytest.raises(NotFoundError, match="never delivered"):
        source.get_answer(430131691, 1)
    with pytest.raises(NotFoundError):
        source.get_answer(512004417, 814573981)  # delivered, but for another poll


def test_inbox_stats_count_what_arrived_and_what_was_refused(intake, engine):
    deliver_samples(intake)
    intake.post("postAnswer", content=b"not json")
    intake.post("postAnswer", content=b"[]")
    intake.post("postAnswer", content=b"[]")
    stats = inbox_stats(engine)
    assert stats["received_total"] == 14 and stats["received_today"] == 14
    assert stats["refused_total"] == 3 and stats["refused_by_reason"] == {"invalid_json": 1, "not_an_object": 2}
    assert datetime.fromisoformat(stats["last_packet_at"]) <= datetime.now(timezone.utc)
    tomorrow = inbox_stats(engine, now=datetime.now(timezone.utc) + timedelta(days=1))
    assert tomorrow["received_today"] == 0 and tomorrow["received_total"] == 14
