"""The run report: totals first, problems by kind with what to do, every answer; masked by default."""
from __future__ import annotations

import csv
import io
import json
import re
import string
import time
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sync.report import labels, messages
from sync.plan.models import AnswerPlan, Command, ContactPlan, DealPlan, Plan, PollPlan, Problem
from sync.report.render import (CSV_COLUMNS, mask_email, mask_name, mask_phone, mask_title, problem_text, render_report,
                         write_report, format_summary_line)
from sync.options import RunSummary

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("md", "html", "json", "csv")
T0 = datetime(2025, 10, 20, 6, 15, 2, tzinfo=timezone.utc)

# Every personal value in the fixture plan: none may show while masking is on.
PERSONAL = [
    "Петров", "Иван", "Сергеевич", "ivan.petrov", "Кузнецова", "Дарья", "new.applicant", "Смирнова", "Елена",
    "e.smirnova", "Олег", "no-such-program", "почты", "Кривой", "not-an-email", "Коннор", "Щукина", "🎓",
    "emoji@", "left.company", "79161234567", "9161234567", "1234567", "89031234567", "9031234567",
    "916 000-00-0", "0000000", "+7 (916) 123-45-67",
]


def _deal(answer_id: int, key: str, title: str, programme: str | None, *, deal_id: int | None = None) -> DealPlan:
    return DealPlan(origin_id=f"{answer_id}:{key}", programme_key=key,
                    programme_id=int(key) if key != "0" else None, programme_title=programme,
                    action="update" if deal_id else "create", deal_id=deal_id,
                    command=f"{'du' if deal_id else 'da'}_{answer_id}_{key}", title=title)


def sample_plan() -> Plan:
    """The sample answers' cases (sandbox/sample_data) as the planner reports them."""
    answers = [
        AnswerPlan(answer_id=814573981, poll_id=430131691, email="ivan.petrov@example.com",
                   display_name="Петров Иван Сергеевич", phone="+79161234567",
                   contact_email="ivan.petrov@example.com",
                   deals=[_deal(814573981, "100", "Цифровой юрист — Петров Иван", "Цифровой юрист"),
                          _deal(814573981, "101", "Data Science — Петров Иван", "Data Science")]),
        AnswerPlan(answer_id=814573982, poll_id=430131691, email="new.applicant@mail.ru",
                   display_name="Кузнецова Дарья", phone="+79031234567", contact_email="new.applicant@mail.ru",
                   deals=[_deal(814573982, "104", "Экономика — Кузнецова Дарья", "Экономика", deal_id=7001)]),
        AnswerPlan(answer_id=814573983, poll_id=430131691, email="e.smirnova@example.org",
                   display_name="Смирнова Елена", contact_email="e.smirnova@example.org",
                   deals=[_deal(814573983, "102", "Юриспруденция — Смирнова Елена", "Юриспруденция")],
                   problems=[Problem(code="duplicate_contacts", severity="info",
                                     params={"contact_ids": [502, 503], "chosen": 502})]),
        AnswerPlan(answer_id=814573990, poll_id=430131691, email="no-such-program@gmail.com", display_name="Олег",
                   contact_email="no-such-program@gmail.com",
                   deals=[_deal(814573990, "100", "Цифровой юрист — Олег", "Цифровой юрист")],
                   problems=[Problem(code="programme_normalised", severity="info",
                                     params={"given": "Цифровой  юрист", "programme": "Цифровой юрист"}),
                             Problem(code="unknown_programme", severity="attention",
                                     params={"given": "Квантовая алхимия"})]),
        AnswerPlan(answer_id=814573991, poll_id=430131691, display_name="Без почты", phone="+79160000000",
                   problems=[Problem(code="missing_email", severity="attention", params={"value": ""})]),
        AnswerPlan(answer_id=814573992, poll_id=430131691, display_name="Кривой",
                   problems=[Problem(code="invalid_email", severity="attention", params={"value": "not-an-email"}),
                             Problem(code="invalid_phone", severity="warning",
                                     params={"value": "+7 916 000-00-0"})]),
        AnswerPlan(answer_id=814573994, poll_id=430131691, email="emoji@example.com",
                   display_name="О'Коннор-Щукина Имя 🎓", contact_email="emoji@example.com",
                   deals=[_deal(814573994, "0", "Заявка из опроса «Магистратура 2025» — О'Коннор-Щукина Имя 🎓",
                                None)],
                   problems=[Problem(code="no_programme", severity="info"),
                             Problem(code="unknown_enum_value", severity="warning",
                                     params={"field": "UF_CRM_LEVEL", "value": "Неизвестный уровень",
                                             "known": ["Бакалавриат", "Магистратура"]})]),
    ]
    contacts = [
        ContactPlan(email="ivan.petrov@example.com", action="update", contact_id=501, command="cu_501",
                    changes=["SECOND_NAME", "PHONE"], answer_ids=[814573981]),
        ContactPlan(email="new.applicant@mail.ru", action="create", command="ca_1", answer_ids=[814573982]),
        ContactPlan(email="e.smirnova@example.org", action="reuse", contact_id=502, answer_ids=[814573983]),
        ContactPlan(email="no-such-program@gmail.com", action="create", command="ca_2", answer_ids=[814573990]),
        ContactPlan(email="emoji@example.com", action="create", command="ca_3", answer_ids=[814573994]),
    ]
    polls = [PollPlan(poll_id=430131702, poll_name="Data Science intake", action="create", owner_id=17,
                      command="pf_430131702",
                      problems=[Problem(code="inactive_owner", severity="warning",
                                        params={"employee_email": "left.company@hse.ru", "user_id": 31,
                                                "default_user_id": 17})])]
    commands = [Command(name="ca_1", method="crm.contact.add", kind="contact_add", answer_ids=[814573982],
                        external_key="new.applicant@mail.ru",
                        params={"fields": {"NAME": "Дарья", "LAST_NAME": "Кузнецова",
                                           "EMAIL": [{"VALUE": "new.applicant@mail.ru"}],
                                           "PHONE": [{"VALUE": "+79031234567"}]}})]
    return Plan(polls=polls, contacts=contacts, answers=answers, commands=commands)


def summary_of(plan: Plan | None = None, **overrides) -> RunSummary:
    values = dict(run_id="dry-0d4c", command="sync", dry_run=True, started_at=T0,
                  finished_at=datetime(2025, 10, 20, 6, 15, 5, tzinfo=timezone.utc), duration_s=3.21,
                  outcome="needs_attention",
                  counts={"answers_seen": 7, "planned": 7, "ready": 4, "needs_attention": 3,
                          "contact_add_planned": 3, "contact_update_planned": 1, "deal_add_planned": 5,
                          "deal_update_planned": 1},
                  problems_by_code={"unknown_programme": 1, "missing_email": 1, "invalid_email": 1,
                                    "invalid_phone": 1, "duplicate_contacts": 1, "programme_normalised": 1,
                                    "no_programme": 1, "unknown_enum_value": 1, "inactive_owner": 1},
                  bitrix_requests=3, bitrix_retries=1, survey_requests=4, plan=plan)
    values.update(overrides)
    return RunSummary(**values)


@pytest.fixture
def summary() -> RunSummary:
    return summary_of(sample_plan())


def csv_rows(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    header = text[1:].split("\r\n", 1)[0]
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";" if ";" in header else ","))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


# --- layout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["md", "html"])
def test_totals_come_before_problems_and_answers(summary, fmt):
    text = render_report(summary, fmt=fmt)
    if fmt == "html":
        text = text[text.index("<body>"):]  # the <title> names the run too
    positions = [text.index(heading) for heading in ("Итоги", "dry-0d4c", "Проблемы по кодам", "Проблемы по видам",
                                                     "Опросные формы", "Ответы")]
    assert positions == sorted(positions)
    assert text.index("Программа не найдена в CRM") < text.index("814573981")  # groups before the answer list


def test_problem_group_says_what_to_do_and_lists_the_answers(summary):
    text = render_report(summary, fmt="md", language="en")
    group = text[text.index("### ❗ Programme not in the CRM — 1"):]
    group = group[:group.index("\n### ")]
    assert ("Add the programme to the programmes smart process in Bitrix24 or an alias in field_mapping.json, "
            "then run `cli.py retry`.") in group
    assert ("| 814573990 | О\\*\\*\\* | Programme 'Квантовая алхимия' is not in the CRM; no deal is made for it. |"
            in group)


def test_groups_are_ordered_attention_then_warnings_then_notes(summary):
    data = json.loads(render_report(summary, fmt="json"))
    severities = [g["severity"] for g in data["problems"]]
    assert severities == sorted(severities, key=["attention", "warning", "info"].index)
    assert {g["code"] for g in data["problems"]} >= {"unknown_programme", "inactive_owner", "duplicate_contacts"}


def test_answer_rows_show_contact_and_deals(summary):
    text = render_report(summary, fmt="md", language="en")
    row = next(line for line in text.splitlines() if line.startswith("| 814573981 |"))
    assert "existing: ID 501, fill in: middle name, phone" in row
    assert "Цифровой юрист · new · «Цифровой юрист — П\\*\\*\\* И\\*\\*\\*»" in row
    update = next(line for line in text.splitlines() if line.startswith("| 814573982 |"))
    assert "update, ID 7001" in update and "| new |" in update


def test_poll_forms_section_shows_owner_and_inactive_owner(summary):
    text = render_report(summary, fmt="md", language="en")
    rows = [line for line in text.splitlines() if line.startswith("| 430131702 | Data Science intake")]
    row = rows[-1]  # the first is in the problem group, the last in the poll forms section
    assert "| new | 17 |" in row
    assert "Poll owner le\\*\\*\\*@hse.ru (user 31) is deactivated in Bitrix24; user 17 is made responsible." in row


def test_count_keys_are_labelled_and_unknown_keys_shown_raw():
    text = render_report(summary_of(sample_plan(), counts={"deals_created": 5, "brand_new_counter": 2}),
                         fmt="md", language="en")
    assert "| Deals created | `deals_created` | 5 |" in text
    assert "| brand\\_new\\_counter | `brand_new_counter` | 2 |" in text


def test_problem_only_counted_in_summary_gets_a_group():
    """invalid_record answers never reach the plan: the count and the advice are still shown."""
    text = render_report(summary_of(sample_plan(), problems_by_code={"invalid_record": 2}), fmt="md", language="en")
    assert "### ❗ Unreadable record — 2" in text
    assert "| Unreadable record | invalid\\_record | needs attention | 2 |" in text


# --- personal data -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_personal_data_masked_in_every_format(summary, fmt):
    text = render_report(summary, fmt=fmt)
    leaked = [value for value in PERSONAL if value in text]
    assert leaked == []
    assert "iv***@example.com" in text.replace("\\*", "*")


@pytest.mark.parametrize("fmt", FORMATS)
def test_planner_output_for_the_sample_answers_leaks_nothing(fmt):
    """The real planner over sandbox/sample_data: real deal titles, real problem params."""
    from sync.mapping import load_mapping
    from sync.source.models import Answer
    from sync.plan.build import AnswerInput, build_answer_plan
    from sync.plan.models import AnswerLookups, CrmContact, PollContext, Programme

    raw = json.loads((ROOT / "sandbox/sample_data/answers.json").read_text(encoding="utf-8"))["answers"]
    programmes = [Programme(id=100 + i, title=t) for i, t in enumerate(
        ["Цифровой юрист", "Data Science", "Юриспруденция", "Экономика", "Master of Data Science"])]
    smirnova = [CrmContact(id=502, name="Елена", last_name="Смирнова", emails=["E.Smirnova@Example.org"]),
                CrmContact(id=503, name="Елена", last_name="Смирнова", emails=["e.smirnova@example.org"])]
    lookups = AnswerLookups(programmes=programmes, contacts_by_email={
        "ivan.petrov@example.com": [CrmContact(id=501, name="Иван", last_name="Петров",
                                               emails=["ivan.petrov@example.com"])],
        "e.smirnova@example.org": smirnova})
    plan = build_answer_plan([AnswerInput(answer=Answer.model_validate(a)) for a in raw],
                             polls={430131691: PollContext(poll_id=430131691, poll_name="Магистратура 2025",
                                                           owner_id=23)},
                             lookups=lookups, mapping=load_mapping(ROOT / "examples" / "field_mapping.smart-processes.json"))
    assert any(d.title.endswith("Петров Иван") for a in plan.answers for d in a.deals)  # titles do carry names
    text = render_report(summary_of(plan), fmt=fmt)
    personal = PERSONAL + ["Alex", "Smith", "Пётр", "student@", "edited@", "NEW.APPLICANT", "Ivan.Petrov"]
    assert [value for value in personal if value in text] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_show_personal_data_reveals_email(summary, fmt):
    text = render_report(summary, fmt=fmt, show_personal_data=True)
    for value in ("ivan.petrov@example.com", "Петров Иван", "+79161234567", "not-an-email", "left.company@hse.ru"):
        assert value in text


def test_json_keeps_crm_commands_only_when_showing_personal_data(summary):
    masked = json.loads(render_report(summary, fmt="json"))["plan"]
    shown = json.loads(render_report(summary, fmt="json", show_personal_data=True))["plan"]
    assert masked["commands"] is None and masked["command_counts"] == {"contact_add": 1}
    assert shown["commands"][0]["params"]["fields"]["NAME"] == "Дарья"


@pytest.mark.parametrize(("raw", "masked"), [
    ("ivan.petrov@example.com", "iv***@example.com"),
    ("abc@mail.ru", "a***@mail.ru"),
    ("not-an-email", "no***"),
    ("", ""),
    (None, ""),
])
def test_mask_email(raw, masked):
    assert mask_email(raw) == masked


@pytest.mark.parametrize(("raw", "masked"), [
    ("+79161234567", "+7916*****67"),
    ("+7 (916) 123-45-67", "+7916*****67"),
    ("89031234567", "8903*****67"),
    ("12345", "***"),
    (None, ""),
])
def test_mask_phone(raw, masked):
    assert mask_phone(raw) == masked


def test_mask_name_and_title():
    assert mask_name("Петров Иван Сергеевич") == "П*** И*** С***"
    assert mask_title("Цифровой юрист — Петров Иван", "Петров Иван Сергеевич") == "Цифровой юрист — П*** И***"
    # Only whole name words: a programme that contains a name's letters stays readable.
    assert mask_title("Маркетинг — Марк", "Марк") == "Маркетинг — М***"
    assert mask_title("Заявка «Ли»", "Ли") == "Заявка «Л***»"
    # A template that glues names to other text, and a title the planner cut in the middle of a name.
    assert mask_title("Экономика/Кузнецова", "Кузнецова Дарья") == "Экономика/К***"
    cut = "Программа " * 25 + "— Кузне"
    assert mask_title(cut, "Кузнецова Дарья").endswith("— К***")


def test_problem_text_masks_what_the_respondent_typed_but_not_programmes():
    bad = Problem(code="invalid_email", severity="attention", params={"value": "ivan.petrov@examplecom"})
    # Masked, but what is wrong (here the missing dot of the domain) stays visible.
    assert problem_text(bad, "en") == "E-mail 'iv**.******@examplecom' is not a valid address: the contact cannot " \
                                      "be found or created."
    assert "ivan.petrov@examplecom" in problem_text(bad, "en", show_personal_data=True)
    unknown = Problem(code="unknown_programme", severity="attention", params={"given": "Квантовая алхимия"})
    assert problem_text(unknown, "ru") == "Программы «Квантовая алхимия» нет в CRM; сделка по ней не создаётся."


def test_unknown_code_is_rendered_generically_and_masked():
    problem = Problem(code="brand_new_check", severity="warning",
                      params={"email": "ivan.petrov@example.com", "note": "call +7 916 123-45-67", "n": 3})
    assert problem_text(problem, "en") == ("Problem 'brand_new_check': email=iv***@example.com, "
                                          "note=call +7916*****67, n=3.")
    plan = sample_plan()
    plan.answers[0].problems.append(problem)
    for fmt in FORMATS:
        text = render_report(summary_of(plan), fmt=fmt, language="en")
        assert "brand_new_check" in text.replace("\\_", "_")
        assert "ivan.petrov" not in text


# --- escaping --------------------------------------------------------------------------------------

def _hostile_plan() -> Plan:
    plan = sample_plan()
    answer = plan.answers[0]
    answer.display_name = "<script>alert(1)</script> Петров"
    answer.deals[0].programme_title = "<script>alert('p')</script>"
    answer.deals[0].title = "<script>alert('p')</script> — <script>alert(1)</script> Петров"
    answer.problems.append(Problem(code="unknown_programme", severity="attention",
                                   params={"given": "<img src=x onerror=alert(1)>"}))
    plan.polls[0].poll_name = '"><script>alert(2)</script>'
    return plan


@pytest.mark.parametrize("show", [False, True])
def test_html_is_self_contained_and_escapes_script(show):
    text = render_report(summary_of(_hostile_plan()), fmt="html", show_personal_data=show)
    assert text.startswith("<!DOCTYPE html>") and '<html lang="ru">' in text
    parser = _Tags()
    parser.feed(text)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed"}
    assert all("src" not in attrs and "href" not in attrs for _, attrs in parser.tags)
    assert [tag for tag, _ in parser.tags].count("style") == 1
    assert "@import" not in text and "url(" not in text
    assert "&lt;script&gt;" in text
    assert "<details" in text and "<summary>" in text


def test_markdown_escapes_pipes_and_newlines():
    plan = sample_plan()
    plan.answers[0].deals[0].programme_title = "Право | IT\nи *всё*"
    text = render_report(summary_of(plan), fmt="md", show_personal_data=True)
    row = next(line for line in text.splitlines() if line.startswith("| 814573981 |"))
    assert "Право \\| IT и \\*всё\\*" in row
    assert row.count(" | ") == 8  # nine cells: no pipe from the data split the row


def test_csv_cells_cannot_start_a_formula():
    plan = sample_plan()
    plan.answers[0].deals[0].programme_title = "=HYPERLINK(\"http://evil\")"
    rows = csv_rows(render_report(summary_of(plan), fmt="csv", show_personal_data=True))
    # A string-literal formula: Excel shows the text as typed (a leading ' would be shown as part of it).
    assert rows[0]["programme"] == '="=HYPERLINK(""http://evil"")"'
    assert rows[0]["phone"] == '="+79161234567"'


def test_secrets_in_the_error_are_redacted_everywhere():
    summary = summary_of(None, outcome="aborted",
                         error="POST https://b24.example.ru/rest/1/s3cr3tw3bh00k/batch failed for "
                               "ivan.petrov@example.com")
    for fmt in FORMATS:
        text = render_report(summary, fmt=fmt, show_personal_data=False)
        assert "s3cr3tw3bh00k" not in text and "ivan.petrov" not in text
    assert "s3cr3tw3bh00k" not in format_summary_line(summary)


# --- formats ----------------------------------------------------------------------------------------

def test_csv_has_bom_and_one_row_per_deal(summary):
    text = render_report(summary, fmt="csv")
    rows = csv_rows(text)
    assert tuple(rows[0]) == CSV_COLUMNS
    deals = [r for r in rows if r["row_type"] == "deal"]
    assert len(deals) == sum(len(a.deals) for a in summary.plan.answers) == 6
    assert [r["programme"] for r in deals if r["answer_id"] == "814573981"] == ["Цифровой юрист", "Data Science"]
    first = deals[0]
    assert (first["contact_action"], first["contact_id"], first["deal_action"]) == ("update", "501", "create")
    assert first["deal_title"] == "Цифровой юрист — П*** И***"
    problems = [r for r in rows if r["row_type"] == "problem"]
    assert len(problems) == sum(len(a.problems) for a in summary.plan.answers)
    assert {r["problem_code"] for r in rows if r["row_type"] == "poll_problem"} == {"inactive_owner"}
    missing = next(r for r in problems if r["problem_code"] == "missing_email")
    assert missing["problem_text"] == "E-mail не указан: контакт нельзя найти или создать."
    assert missing["problem_severity"] == "attention" and missing["answer_status"] == "attention"


def test_json_is_structured_with_problem_texts(summary):
    text = render_report(summary, fmt="json", language="en")
    data = json.loads(text)
    assert list(data) == ["report_version", "language", "personal_data_masked", "summary", "summary_line",
                          "problems", "plan"]
    assert data["summary"]["run_id"] == "dry-0d4c" and data["summary"]["needs_attention"] == 3
    oleg = next(a for a in data["plan"]["answers"] if a["answer_id"] == 814573990)
    assert oleg["problems_text"] == [
        "Programme 'Цифровой  юрист' was read as 'Цифровой юрист' (spacing or case differ).",
        "Programme 'Квантовая алхимия' is not in the CRM; no deal is made for it."]
    assert oleg["needs_attention"] is True and oleg["display_name"] == "О***"
    assert oleg["deals"][0]["title"] == "Цифровой юрист — О***"
    assert data["plan"]["contacts"][0]["email"] == "iv***@example.com"
    assert render_report(summary, fmt="json", language="en") == text  # stable


def test_russian_is_default(summary):
    html_text = render_report(summary, fmt="html")
    assert '<html lang="ru">' in html_text and "Итоги" in html_text and "Что делать" in html_text
    assert "Пробный запуск" in render_report(summary, fmt="md")
    english = render_report(summary, fmt="html", language="en")
    assert '<html lang="en">' in english and "Totals" in english and "Итоги" not in english


def test_unknown_format_and_language_are_rejected(summary):
    with pytest.raises(ValueError, match="md, html, json, csv"):
        render_report(summary, fmt="pdf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ru, en"):
        render_report(summary, fmt="md", language="de")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "check"), [
    ("plan.md", lambda b: b.startswith("# Отчёт".encode())),
    ("plan.html", lambda b: b.startswith(b"<!DOCTYPE html>")),
    ("plan.HTM", lambda b: b.startswith(b"<!DOCTYPE html>")),
    ("plan.json", lambda b: json.loads(b)["summary"]["run_id"] == "dry-0d4c"),
    ("plan.csv", lambda b: b.startswith(b"\xef\xbb\xbfrow_type;answer_id")),  # ; for a Russian Excel
])
def test_write_report_picks_the_format_by_extension(summary, tmp_path, name, check):
    path = write_report(summary, tmp_path / "reports" / name)
    assert path == tmp_path / "reports" / name
    assert check(path.read_bytes())
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no partial file left


def test_unknown_extension_is_rejected_with_supported_list(summary, tmp_path):
    with pytest.raises(ValueError) as info:
        write_report(summary, tmp_path / "plan.txt")
    assert "'.txt'" in str(info.value) and ".md, .html, .htm, .json, .csv" in str(info.value)
    assert not (tmp_path / "plan.txt").exists()


# --- without a plan, summary line --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_report_without_plan(fmt):
    summary = summary_of(None, dry_run=False, outcome="needs_attention",
                         counts={"answers_seen": 40, "pushed": 38, "needs_attention": 2, "deals_created": 50},
                         problems_by_code={"unknown_programme": 2, "no_programme": 5})
    text = render_report(summary, fmt=fmt, language="en")
    assert "unknown_programme" in text.replace("\\_", "_")
    if fmt == "md":
        assert "| Deals created | `deals_created` | 50 |" in text
        assert "### ❗ Programme not in the CRM — 2" in text and "this run's plan was not kept" in text
        assert "## Answers" not in text
    if fmt == "json":
        data = json.loads(text)
        assert data["plan"] is None and data["problems"][0] == {
            "code": "unknown_programme", "severity": "attention", "title": "Programme not in the CRM",
            "advice": messages.PROBLEMS["en"]["unknown_programme"].advice, "count": 2, "answer_ids": [],
            "poll_ids": []}
    if fmt == "csv":
        assert [(r["row_type"], r["problem_code"]) for r in csv_rows(text)] == [
            ("problem_total", "unknown_programme"), ("problem_total", "no_programme")]


def test_summary_line():
    dry = summary_of(None)
    assert format_summary_line(dry) == (
        "sync (dry run): some answers need attention; answers seen 7, planned 7, pushed 0, needing attention 3; "
        "contacts to create 3, deals to create 5; requests: Bitrix24 3 (retries: 1), survey 4; 3.2 s")
    real = summary_of(None, dry_run=False, outcome="ok", duration_s=125.4,
                      counts={"answers_seen": 1000, "planned": 1000, "pushed": 1000, "contacts_created": 640,
                              "deals_created": 1500})
    assert format_summary_line(real) == (
        "sync: ok; answers seen 1000, planned 1000, pushed 1000, needing attention 0; contacts created 640, "
        "deals created 1500; requests: Bitrix24 3 (retries: 1), survey 4; 2 min 5 s")
    assert format_summary_line(real, language="ru").startswith("sync: успешно; ответов прочитано 1000")


# --- texts ------------------------------------------------------------------------------------------

KNOWN_CODES = {"missing_email", "invalid_email", "invalid_phone", "unknown_poll", "unknown_programme",
               "ambiguous_programme", "alias_target_missing", "all_programmes_unknown", "programme_normalised",
               "programme_alias", "no_programme", "duplicate_contacts", "unknown_enum_value", "value_cut", "inactive_programme", "unregistered_poll",
               "invalid_value", "unknown_owner", "inactive_owner", "invalid_record"}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_problem_code_has_ru_and_en_text():
    assert set(messages.PROBLEMS) == set(messages.LANGUAGES) == {"ru", "en"}
    assert set(messages.PROBLEMS["ru"]) == set(messages.PROBLEMS["en"]) == KNOWN_CODES == set(messages.SEVERITY)
    for code in KNOWN_CODES:
        ru, en = messages.PROBLEMS["ru"][code], messages.PROBLEMS["en"][code]
        for part in ("title", "text", "advice"):
            assert getattr(ru, part) and getattr(en, part), (code, part)
            assert _placeholders(getattr(ru, part)) == _placeholders(getattr(en, part)), (code, part)
        assert not _placeholders(ru.title) and not _placeholders(ru.advice), code
        assert "`" not in ru.text + en.text and (ru.advice.count("`") % 2, en.advice.count("`") % 2) == (0, 0)


def test_labels_and_counts_exist_in_both_languages_with_the_same_placeholders():
    for table in (labels.LABELS, messages.COUNTS, messages.FIELD_NAMES, messages.GENERIC):
        assert set(table) == {"ru", "en"}
    for table in (labels.LABELS, messages.COUNTS, messages.FIELD_NAMES):
        assert set(table["ru"]) == set(table["en"])
    for ru, en in zip(messages.GENERIC["ru"], messages.GENERIC["en"]):
        assert _placeholders(ru) == _placeholders(en)
    for key, ru in labels.LABELS["ru"].items():
        assert _placeholders(ru) == _placeholders(labels.LABELS["en"][key]), key


def test_every_code_the_planner_emits_has_a_text():
    """A new ``Problem(code=...)`` in the sync package fails here until it has its texts."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "sync").rglob("*.py"))
    emitted = set(re.findall(r'Problem\(\s*code="(\w+)"', sources))
    emitted |= set(re.findall(r'return None, "(\w+)"', (ROOT / "sync/plan/normalize.py").read_text(encoding="utf-8")))
    assert emitted >= {"unknown_programme", "missing_email", "invalid_record"}
    assert emitted - set(messages.PROBLEMS["en"]) == set()


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_known_code_renders_without_unfilled_placeholders(language):
    params = {"value": "x", "poll_id": 1, "given": "g", "candidates": ["a", "b"], "target": "t",
              "programme": "p", "contact_ids": [1, 2], "chosen": 1, "field": "first_name", "known": ["k"],
              "max": 50, "question": "q", "employee_email": "e@x.ru", "user_id": 3, "default_user_id": 17,
              "error": "bad", "length": 60, "kept": 50, "programme_id": 716}
    for code in KNOWN_CODES:
        text = problem_text(Problem(code=code, severity="info", params=params), language)
        assert "?" not in text and "{" not in text, (code, text)


# --- scale ------------------------------------------------------------------------------------------

def test_twenty_thousand_answers_render_in_seconds():
    answers, contacts = [], []
    for i in range(20_000):
        answer_id = 900_000_000 + i
        problems = [Problem(code="unknown_programme", severity="attention", params={"given": f"P{i % 13}"})] \
            if i % 5 == 0 else []
        answers.append(AnswerPlan(answer_id=answer_id, poll_id=1, email=f"user{i}@example.com",
                                  display_name=f"Фамилия{i} Имя{i}", phone="+79161234567",
                                  contact_email=f"user{i}@example.com", problems=problems,
                                  deals=[_deal(answer_id, k, f"Программа {k} — Фамилия{i} Имя{i}", f"Программа {k}")
                                         for k in ("1", "2")]))
        contacts.append(ContactPlan(email=f"user{i}@example.com", action="create", command=f"ca_{i}",
                                    answer_ids=[answer_id]))
    summary = summary_of(Plan(answers=answers, contacts=contacts))
    for fmt in FORMATS:
        started = time.perf_counter()
        text = render_report(summary, fmt=fmt)
        elapsed = time.perf_counter() - started
        assert elapsed < 10, (fmt, elapsed)  # ~1-2 s on a laptop; quadratic work would take minutes
        assert "900019999" in text and "Фамилия19999" not in text
