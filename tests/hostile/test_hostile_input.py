"""Hostile input end to end: every answer of ``corpus.json`` ends synced or with a specific reason.

One real sync (after a dry run) takes the whole corpus at once, so the same run also proves
that no answer crashes it or stops the others. Routes into the survey emulator:

* ``api`` answers go through ``admin.add_answer``, which holds them to the contract;
* ``raw`` answers and polls are served byte for byte as the corpus has them (the
  emulator's ``Dataset.add_packed`` and ``Dataset.polls``), for what a real platform may
  send but the emulator's contract check refuses: ``utm`` as a string, items without a
  code, lone surrogates, ids that are strings, booleans or too big, duplicate ids.

Then targeted tests: polls that vanish in the middle of a run; CRM replies with
unexpected shapes and extra fields (look-ups through a fake client and through the real
client over ``responses``; odd ids returned by add commands).
"""
from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import responses

import sandbox.survey.dataset as survey_dataset
from sandbox import Sandbox
from sandbox.survey.clock import parse_rfc3339, to_us
from sandbox.survey.dataset import Dataset, PackedAnswer
from core.errors import FatalError
from sync.crm.lookups import fetch_answer_lookups, fetch_contacts, fetch_poll_lookups, fetch_programmes
from sync.mapping import load_mapping
from sync.plan.normalize import match_key_email
from sync.plan.models import Command, Programme, Ref
from sync.crm.push import created_id, push_commands
from tests.conftest import ROOT, Job

CORPUS_PATH = Path(__file__).with_name("corpus.json")
MAPPING = load_mapping(ROOT / "examples" / "field_mapping.smart-processes.json")


# --- the corpus -----------------------------------------------------------------------------------

def _expand(value):
    """The corpus' shorthands: {"$repeat": [text, n]}, {"$concat": [...]}, {"$float": "nan"}."""
    if isinstance(value, dict):
        if set(value) == {"$repeat"}:
            text, times = value["$repeat"]
            return text * times
        if set(value) == {"$concat"}:
            return "".join(_expand(v) for v in value["$concat"])
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


CORPUS = _expand(json.loads(CORPUS_PATH.read_text(encoding="utf-8")))
ANSWERS = CORPUS["answers"]
POLLS = CORPUS["polls"]


def test_corpus_is_big_and_every_entry_says_why_and_what_to_expect():
    assert len(ANSWERS) >= 40
    assert len({e["id"] for e in ANSWERS + POLLS}) == len(ANSWERS) + len(POLLS)
    for entry in ANSWERS:
        assert entry["why"] and entry["route"] in ("api", "raw"), entry["id"]
        expect = entry["expect"]
        assert expect["status"] in ("pushed", "needs_attention", "invalid_record", "superseded"), entry["id"]
        if expect["status"] == "needs_attention":
            assert expect["reason"], entry["id"]


def _answer_id(entry) -> int | None:
    value = entry["answer"].get("answer_id")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2 ** 53 else None


SHARED = [e for e in ANSWERS if not e["expect"].get("isolated")]
ISOLATED = [e for e in ANSWERS if e["expect"].get("isolated")]


def _dataset(entries) -> Dataset:
    """The sample data plus the corpus' raw polls and these raw answers, served exactly as written."""
    dataset = Dataset.samples()
    for entry in POLLS:
        dataset.polls.append(entry["poll"])
    default_us = to_us(parse_rfc3339(CORPUS["default_time"]))
    for entry in entries:
        if entry["route"] != "raw":
            continue
        doc = entry["answer"]
        try:
            updated_us = to_us(parse_rfc3339(doc.get("updated_at")))
        except (TypeError, ValueError):
            updated_us = default_us
        # ensure_ascii: a lone surrogate travels as the "\ud800" escape the platform would send
        body = json.dumps(doc, ensure_ascii=True).encode("ascii")
        index_id = entry.get("index_id") or int(doc["answer_id"])  # the emulator's own key
        dataset.add_packed(PackedAnswer(index_id, entry.get("listed_under") or doc["poll_id"], updated_us, body))
    return dataset


@contextmanager
def _sandbox_with(entries):
    """Both emulators: sample data, the corpus' raw polls and answers as written, its api answers added.

    ``Sandbox`` builds its survey dataset itself, so ``build_dataset`` is swapped for the
    time it is made.
    """
    dataset = _dataset(entries)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(survey_dataset, "build_dataset", lambda **_: dataset)
        box = Sandbox(portal="smart", answers=0, rate_limit=None)
    with box:
        for entry in entries:
            if entry["route"] == "api":
                box.survey.admin.add_answer(entry["answer"])
        yield box


@pytest.fixture(scope="module")
def hostile(module_store_url):
    """The sandbox after a dry run and one real sync of the sample data plus the whole (shared) corpus."""
    with _sandbox_with(SHARED) as box:
        job = Job(box, module_store_url)
        dry = job.run(dry_run=True)
        summary = job.run()
        yield SimpleNamespace(box=box, job=job, dry=dry, summary=summary, ledger=job.ledger())


def test_dry_run_and_real_run_complete_and_say_something_needs_attention(hostile):
    for summary in (hostile.dry, hostile.summary):
        assert summary.outcome == "needs_attention", summary.error
        assert summary.error is None
    invalid = [e for e in SHARED if e["expect"]["status"] == "invalid_record"]
    assert hostile.summary.problems_by_code.get("invalid_record", 0) >= len(invalid)


def _deals_of(box, answer_id):
    return sorted((d for d in box.bitrix.admin.deals() if str(d.get("UF_CRM_ANSWER_ID")) == str(answer_id)),
                  key=lambda d: int(d["ID"]))


def _contact(box, contact_id):
    return next(c for c in box.bitrix.admin.contacts() if str(c["ID"]) == str(contact_id))


def _same(actual, expected) -> bool:
    if expected is None:
        return not actual
    if isinstance(expected, bool):
        return actual is expected or actual == expected
    if isinstance(expected, int):
        return str(actual) == str(expected)
    return actual == expected


def _check_fields(record: dict, expected: dict, what: str) -> None:
    for field, value in expected.items():
        actual = record.get(field)
        if field in ("EMAIL", "PHONE"):
            actual = (actual or [{}])[0].get("VALUE")
        assert _same(actual, value), f"{what} {field}: {actual!r} != {value!r}"


def _cases(entries):
    for entry in entries:
        reason = entry["expect"].get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(entry, id=entry["id"], marks=marks)


@pytest.mark.parametrize("entry", _cases(SHARED))
def test_hostile_answer_ends_synced_or_with_a_reason(hostile, entry):
    expect, box = entry["expect"], hostile.box
    answer_id = _answer_id(entry)
    if expect["status"] == "invalid_record":
        # Nothing to sync: the run counted it (above) and went on. Where there is an id,
        # the ledger should keep it as needing attention, so `status` shows it and `retry` sees it.
        if "ledger" in expect:
            row = hostile.ledger.get_answer(answer_id)
            assert row is not None, f"answer {answer_id}: not in the ledger"
            assert row.status == expect["ledger"]["status"]
            assert expect["ledger"]["reason"] in {p["code"] for p in row.problems or []}
        return
    if expect["status"] == "superseded":
        for email in expect["absent_emails"]:
            assert not [c for c in box.bitrix.admin.contacts()
                        if any(match_key_email(e["VALUE"]) == email for e in c.get("EMAIL", []))], email
        return
    row = hostile.ledger.get_answer(answer_id)
    assert row is not None, f"answer {answer_id} is not in the ledger"
    problems = row.problems or []
    codes = {p["code"] for p in problems}
    assert row.status == expect["status"], (row.status, row.error, codes)
    if expect["status"] == "needs_attention":
        assert expect["reason"] in {p["code"] for p in problems if p["severity"] == "attention"}, codes
    assert set(expect.get("problems", [])) <= codes, codes
    assert len(json.dumps(problems, ensure_ascii=False)) <= expect.get("max_problem_chars", 5000)

    deals = _deals_of(box, answer_id)
    if "deals" in expect:
        assert len(deals) == expect["deals"], [d["TITLE"] for d in deals]
    if expect.get("deal"):
        _check_fields(deals[0], expect["deal"], "deal")
    for deal in deals:
        if "deal_title_starts" in expect:
            assert deal["TITLE"].startswith(expect["deal_title_starts"]), deal["TITLE"]
        assert len(deal["TITLE"]) <= expect.get("title_max", 255)
    if deals and {"contact", "contact_is_not", "contact_lacks", "same_contact_as"} & set(expect):
        (contact_id,) = {str(d["CONTACT_ID"]) for d in deals}
        contact = _contact(box, contact_id)
        _check_fields(contact, expect.get("contact", {}), "contact")
        for field, value in expect.get("contact_lacks", {}).items():
            assert contact.get(field) != value, field
        if "contact_is_not" in expect:
            assert contact_id != str(expect["contact_is_not"])
        if "same_contact_as" in expect:
            other = next(e for e in ANSWERS if e["id"] == expect["same_contact_as"])
            assert {str(d["CONTACT_ID"]) for d in _deals_of(box, _answer_id(other))} == {contact_id}


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["id"]) for e in ISOLATED])
def test_hostile_answer_that_needs_a_run_of_its_own(request, store_url, entry):
    """Entries that abort the whole run: alone with the sample data, the run must still finish."""
    backend = "postgres" if store_url.startswith("postgresql") else "sqlite"
    if entry["expect"].get("xfail") and backend in entry["expect"].get("xfail_on", ["sqlite", "postgres"]):
        request.applymarker(pytest.mark.xfail(strict=True, reason=entry["expect"]["xfail"]))
    with _sandbox_with([entry]) as box:
        job = Job(box, store_url)
        summary = job.run()
        assert summary.error is None and summary.outcome == "needs_attention"
        assert summary.problems_by_code.get("invalid_record", 0) >= 1
        assert job.ledger().get_answer(814573981).status == "pushed"  # the others were not stopped


@pytest.mark.parametrize("entry", _cases(POLLS))
def test_hostile_poll_gets_one_poll_form(hostile, entry):
    poll_id, expect = entry["poll"]["poll_id"], entry["expect"]
    forms = [i for i in hostile.box.bitrix.admin.items(1036) if str(i["ufCrm6PollId"]) == str(poll_id)]
    assert len(forms) == 1
    (form,) = forms
    if "title" in expect:
        assert form["title"] == expect["title"]
    if "title_starts" in expect:
        assert form["title"].startswith(expect["title_starts"]), form["title"][:60]
    assert len(form["title"]) <= expect.get("title_max", 255)
    assert str(form["assignedById"]) == str(expect["owner"])
    row = next(r for r in hostile.ledger.poll_rows(poll_ids=[poll_id]))
    assert row.status == "pushed"
    assert set(expect.get("problems", [])) <= {p["code"] for p in row.problems or []}


def test_no_email_or_external_key_was_created_twice(hostile):
    emails = Counter(match_key_email(e["VALUE"]) for c in hostile.box.bitrix.admin.contacts()
                     for e in c.get("EMAIL", []))
    # the sample portal seeds two contacts sharing one e-mail on purpose (duplicate_contacts)
    assert {e: n for e, n in emails.items() if n > 1} == {"e.smirnova@example.org": 2}
    origins = Counter(d.get("ORIGIN_ID") for d in hostile.box.bitrix.admin.deals() if d.get("ORIGIN_ID"))
    assert [k for k, n in origins.items() if n > 1] == []


def test_every_answer_with_an_id_is_in_the_ledger(hostile):
    for entry in SHARED:
        if entry["expect"]["status"] in ("pushed", "needs_attention"):
            assert hostile.ledger.get_answer(_answer_id(entry)) is not None, entry["id"]


def test_second_run_over_the_corpus_creates_nothing(hostile):
    before = hostile.box.bitrix.admin.dump()
    summary = hostile.job.run()
    after = hostile.box.bitrix.admin.dump()
    assert summary.error is None
    assert len(after["contacts"]) == len(before["contacts"])
    assert len(after["deals"]) == len(before["deals"])
    assert {k: len(v) for k, v in after["items"].items()} == {k: len(v) for k, v in before["items"].items()}


# --- polls that vanish -------------------------------------------------------------------------

def _vanish_on_first_listing(monkeypatch, box, poll_id):
    """Delete ``poll_id`` on the platform just before its answers are first listed (after the polls page)."""
    from sync.clients.survey import SurveyClient

    real = SurveyClient.iter_answers
    gone = []

    def iter_answers(self, pid, updated_since=None):
        if pid == poll_id and not gone:
            gone.append(pid)
            box.survey.admin.delete_poll(pid)
        return real(self, pid, updated_since)

    monkeypatch.setattr(SurveyClient, "iter_answers", iter_answers)
    return gone


def test_poll_vanishing_between_its_listing_and_its_answers_stops_nothing(job, monkeypatch):
    admin = job.box.survey.admin
    admin.add_poll({"poll_id": 777001, "poll_name": "Исчезающий опрос", "poll_language": "ru",
                    "employee_email": "admin@hse.ru"})
    admin.add_answer({"answer_id": 960000001, "poll_id": 777001, "answers": [{"code": "email", "value": "v@x.ru"}]})
    gone = _vanish_on_first_listing(monkeypatch, job.box, 777001)

    summary = job.run()

    assert gone == [777001] and summary.error is None
    ledger = job.ledger()
    assert ledger.get_answer(814573981).status == "pushed"  # the other polls' answers went on
    assert ledger.get_answer(960000001) is None  # never readable: nothing to keep
    (row,) = ledger.poll_rows(poll_ids=[777001])
    assert row.status == "deleted"
    assert not [i for i in job.box.bitrix.admin.items(1036) if str(i["ufCrm6PollId"]) == "777001"]
    assert job.run().error is None  # and the next run is quiet about it


def test_answers_staged_before_their_poll_vanished_are_still_pushed(job):
    admin, bitrix = job.box.survey.admin, job.box.bitrix.admin
    admin.add_poll({"poll_id": 777002, "poll_name": "Опрос", "poll_language": "ru", "employee_email": "admin@hse.ru"})
    admin.add_answer({"answer_id": 960000002, "poll_id": 777002, "answers": [
        {"code": "email", "value": "late@x.ru"}, {"code": "programs", "value": ["Экономика"]}]})
    # run 1: the poll form is made, the answer's deal fails (the CRM refuses it for now)
    bitrix.set_faults(script=[{"kind": "batch_command_error", "command": "da_960000002_104", "times": 100}])
    job.run()
    assert job.ledger().get_answer(960000002).status in ("failed", "in_flight")
    bitrix.clear_faults()
    admin.delete_poll(777002)

    summary = job.run()

    assert summary.error is None
    row = job.ledger().get_answer(960000002)
    assert row.status == "pushed", (row.status, row.error, row.problems)
    (form,) = [i for i in bitrix.items(1036) if str(i["ufCrm6PollId"]) == "777002"]
    (deal,) = [d for d in bitrix.deals() if str(d.get("UF_CRM_ANSWER_ID")) == "960000002"]
    assert str(deal["PARENT_ID_1036"]) == str(form["id"])
    assert job.ledger().poll_rows(poll_ids=[777002])[0].status == "deleted"


def test_answers_of_a_vanished_poll_without_a_poll_form_get_a_reason(job, monkeypatch):
    admin = job.box.survey.admin
    admin.add_poll({"poll_id": 777003, "poll_name": "Опрос", "poll_language": "ru", "employee_email": "admin@hse.ru"})
    admin.add_answer({"answer_id": 960000003, "poll_id": 777003, "answers": [{"code": "email", "value": "w@x.ru"}]})
    # run 1 stages the answer, then Bitrix24 refuses the webhook: nothing is written for this poll
    job.box.bitrix.admin.set_faults(script=[{"kind": "invalid_credentials", "times": 1}])
    with pytest.raises(FatalError):
        job.run()
    job.box.bitrix.admin.clear_faults()
    admin.delete_poll(777003)

    summary = job.run()

    assert summary.error is None
    row = job.ledger().get_answer(960000003)
    assert row is not None and row.status == "needs_attention"
    assert "unknown_poll" in {p["code"] for p in row.problems}


def test_answers_wait_for_a_poll_form_that_failed(job):
    admin, bitrix = job.box.survey.admin, job.box.bitrix.admin
    admin.add_poll({"poll_id": 777004, "poll_name": "Опрос", "poll_language": "ru", "employee_email": "admin@hse.ru"})
    admin.add_answer({"answer_id": 960000004, "poll_id": 777004, "answers": [{"code": "email", "value": "u@x.ru"}]})
    # the first batch is the poll look-up, the second writes the poll forms: pf_777004 fails there
    bitrix.set_faults(script=[{"kind": "batch_command_error", "command": "pf_777004", "times": 2}])
    job.run()
    job.run()  # the poll form is written now
    (form,) = [i for i in bitrix.items(1036) if str(i["ufCrm6PollId"]) == "777004"]
    (deal,) = [d for d in bitrix.deals() if str(d.get("UF_CRM_ANSWER_ID")) == "960000004"]
    assert str(deal.get("PARENT_ID_1036")) == str(form["id"])


def test_answers_of_an_unreadable_poll_are_still_staged(store_url):
    from storage.db import make_engine, migrate
    from storage.ledger import Ledger
    from sync.source.models import Answer, InvalidRecord, Page
    from sync.source.pull import pull

    class Reader:
        def iter_polls(self, updated_since):
            bad = {"poll_id": 777005, "poll_name": "x", "updated_at": "2025-11-01T10:00:00"}  # naive time
            yield Page(items=[], invalid=[InvalidRecord(raw=bad, error="updated_at: timezone", record_id=777005)])

        def iter_answers(self, poll_id, updated_since):
            yield Page(items=[Answer.model_validate({"answer_id": 960000005, "poll_id": 777005,
                                                     "created_at": "2025-11-01T10:00:00+03:00",
                                                     "updated_at": "2025-11-01T10:00:00+03:00"})])

    engine = make_engine(store_url)
    migrate(engine)
    ledger = Ledger(engine)
    pull(Reader(), ledger, since=None, poll_ids=None, lookback=timedelta(minutes=10), run_id="r")
    assert ledger.get_answer(960000005) is not None


# --- CRM replies with unexpected shapes or extra fields ------------------------------------------

class FakeReads:
    """A ``ReadClient`` answering each read command with a canned result (``name`` prefix → result)."""

    def __init__(self, results: dict[str, object], rows: list | None = None) -> None:
        self.results = results
        self.rows = rows or []
        self.sent: list[dict] = []

    def batch(self, commands, *, halt=False, idempotent):
        self.sent.append(commands)
        outcomes = {}
        for name in commands:
            result = next(v for k, v in self.results.items() if name.startswith(k))
            outcomes[name] = SimpleNamespace(ok=True, result=result, next=None, error=None, error_description=None)
        return SimpleNamespace(outcomes=outcomes)

    def list_all(self, method, params=None, **kwargs):
        return iter(self.rows)


ODD_CONTACT_ROWS = {  # PHP object-shaped list, ids as strings, nulls, numbers and extra fields
    "0": {"ID": "501", "NAME": None, "LAST_NAME": 12345, "SECOND_NAME": ["x"], "UF_CRM_EXTRA": {"deep": [1]},
          "EMAIL": {"7": {"ID": "7", "VALUE": " Ivan.Petrov@Example.com ", "VALUE_TYPE": "WORK"}},
          "PHONE": None},
    "1": {"ID": 502.0, "EMAIL": ["e.smirnova@example.org", {"VALUE": None}], "PHONE": [{"VALUE": 79161112233}]},
    "2": "not a row",
    "3": {"ID": None, "EMAIL": [{"VALUE": "ghost@example.com"}]},
    "4": {"ID": "abc", "EMAIL": [{"VALUE": "ghost@example.com"}]},
    "5": {"ID": "²", "EMAIL": [{"VALUE": "ghost@example.com"}]},
}


def test_contact_lookups_read_odd_shapes_and_skip_unusable_rows():
    client = FakeReads({"dup_": {"CONTACT": {"0": 501, "1": "502", "2": None, "3": True}, "LEAD": [9], "extra": 1},
                        "dk_": {"0": {"ID": "77", "ORIGIN_ID": "1:100", "MORE": True},
                                   "1": {"ID": None, "ORIGIN_ID": "1:101"}, "2": ["junk"],
                                   "3": {"ID": "78", "ORIGIN_ID": 5}},
                        "ct_": ODD_CONTACT_ROWS})
    lookups = fetch_answer_lookups(client, MAPPING, emails=["ivan.petrov@example.com", "e.smirnova@example.org",
                                                            "ghost@example.com"],
                                   origin_ids=["1:100", "1:101"], source_name="survey-platform", programmes=[])
    assert sorted(lookups.contacts_by_email) == ["e.smirnova@example.org", "ivan.petrov@example.com"]
    ivan = lookups.contacts_by_email["ivan.petrov@example.com"][0]
    assert (ivan.id, ivan.name, ivan.last_name, ivan.second_name) == (501, "", "12345", "")
    assert lookups.contacts_by_email["e.smirnova@example.org"][0].phones == ["79161112233"]
    assert lookups.deals_by_origin == {"1:100": 77}
    assert client.sent[-1]["ct_0"][1]["filter"] == {"@ID": [501, 502]}


@pytest.mark.parametrize("empty", [[], None, {}, "", {"CONTACT": []}, {"CONTACT": None}])
def test_findbycomm_with_nothing_found_in_any_shape(empty):
    lookups = fetch_answer_lookups(FakeReads({"dup_": empty}), MAPPING, emails=["a@example.com"], origin_ids=[],
                                   source_name="survey-platform", programmes=[])
    assert lookups.contacts_by_email == {}


def test_poll_lookups_read_odd_shapes():
    client = FakeReads({"user_": {"0": {"ID": "1", "EMAIL": "ADMIN@hse.ru", "ACTIVE": "Y", "UF_DEPARTMENT": [1]},
                                  "1": {"ID": "x", "EMAIL": "admin@hse.ru", "ACTIVE": True}, "2": None},
                        "pf_": {"items": {"0": {"id": 9, "ufCrm6PollId": "430131691", "extra": {}},
                                          "1": {"id": "8", "ufCrm6PollId": 430131691.0},
                                          "2": {"id": None, "ufCrm6PollId": 430131702},
                                          "3": {"id": 10, "ufCrm6PollId": None}}, "total": 4}})
    lookups = fetch_poll_lookups(client, MAPPING, owner_emails=["admin@hse.ru"], poll_ids=[430131691, 430131702])
    assert lookups.users_by_email["admin@hse.ru"].id == 1 and lookups.users_by_email["admin@hse.ru"].active
    assert lookups.items_by_poll == {430131691: 8}


def test_poll_form_list_as_a_bare_list_of_rows():
    client = FakeReads({"pf_": [{"id": 5, "ufCrm6PollId": 430131691}]})
    assert fetch_poll_lookups(client, MAPPING, owner_emails=[], poll_ids=[430131691]).items_by_poll == {430131691: 5}


def test_programmes_with_odd_rows():
    rows = [{"id": "100", "title": "Цифровой юрист", "extra": 1}, {"id": 101, "title": None}, {"title": "no id"},
            "junk", {"id": 102, "title": 2024}]
    assert fetch_programmes(FakeReads({}, rows), MAPPING) == [
        Programme(id=100, title="Цифровой юрист"), Programme(id=101, title=""), Programme(id=102, title="2024")]


def test_contact_rows_through_the_real_client_with_extra_sections_and_fields():
    """The real Bitrix24Client over `responses`: a batch reply with extra sections, fields and PHP shapes."""
    from sync.clients.bitrix24 import Bitrix24Client

    url = "https://portal.example.ru/rest/1/s3cr3t/"
    with responses.RequestsMock() as mock:
        mock.post(url + "batch.json", json={
            "result": {"result": {"ct_0": {"0": {"ID": "501", "NAME": "Иван", "EMAIL": [
                {"ID": "1", "VALUE": "ivan@example.com", "VALUE_TYPE": "WORK", "TYPE_ID": "EMAIL", "NEW": 1}]}}},
                "result_error": [], "result_total": {"ct_0": "1"}, "result_next": [], "result_time": [],
                "result_unexpected": {"ct_0": 1}},
            "time": {"start": 1.0}, "unexpected": "field"})
        client = Bitrix24Client(url, sleep=lambda s: None)
        contacts, _ = fetch_contacts(client, [501])
    assert [(c.id, c.name, c.emails) for c in contacts] == [(501, "Иван", ["ivan@example.com"])]


@pytest.mark.parametrize("result,expected", [
    (58943, 58943), ("58943", 58943), ({"item": {"id": 7, "extra": []}}, 7), ({"item": {"id": "7"}}, 7),
    ({"ID": 9}, 9), (True, None), ({"item": None}, None), ("abc", None), ([1, 2], None), (None, None),
])
def test_add_results_in_odd_shapes_give_an_id_or_none(result, expected):
    command = Command(name="ca_1", method="crm.contact.add", kind="contact_add", params={})
    assert created_id(command, result) == expected


@pytest.mark.parametrize("result", [0, -5, {"item": {"id": 0}}])
def test_an_add_that_returns_a_non_positive_id_is_not_trusted(result):
    command = Command(name="ca_1", method="crm.contact.add", kind="contact_add", params={})
    assert created_id(command, result) is None


def test_add_replies_without_a_usable_id_are_reconciled_not_trusted():
    """A contact add answering `true` has an unknown outcome; its deals are not sent with a guessed id."""
    commands = [Command(name="ca_1", method="crm.contact.add", kind="contact_add", params={"fields": {}}),
                Command(name="da_1_0", method="crm.deal.add", kind="deal_add", depends_on=["ca_1"],
                        params={"fields": {"CONTACT_ID": Ref(command="ca_1")}})]

    class Client:
        def batch(self, to_send, *, halt=False, idempotent):
            return SimpleNamespace(outcomes={n: SimpleNamespace(ok=True, result=True if n == "ca_1" else 5,
                                                                error=None, error_description=None)
                                             for n in to_send})

    results = push_commands(Client(), commands)
    assert results["ca_1"].state == "unknown"
    assert results["da_1_0"].state != "ok"  # chained to an unknown contact: not trusted
