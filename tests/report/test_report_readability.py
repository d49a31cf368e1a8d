"""What the admissions staff read in a dry-run report (issue 13, item 9)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from sync.options import RunSummary
from sync.plan.models import AnswerPlan, DealPlan, Plan, Problem
from sync.report.masking import mask_broken_email
from sync.report.messages import COUNTS
from sync.report.render import render_report

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)


def _summary(*answers: AnswerPlan) -> RunSummary:
    return RunSummary(run_id="dry-1", dry_run=True, started_at=T0, finished_at=T0, outcome="needs_attention",
                      counts={"needs_attention": 1}, plan=Plan(answers=list(answers)))


def test_a_masked_invalid_email_still_shows_what_is_wrong():
    assert mask_broken_email("ivan petrov@mail.ru") == "iv** ******@mail.ru"     # the space
    assert mask_broken_email("ivan..petrov@mail.ru") == "iv**..******@mail.ru"   # the doubled dot
    assert mask_broken_email("ivan.petrov@mail,ru") == "iv**.******@mail,ru"     # the comma
    assert mask_broken_email("ivan.petrov.mail.ru") == "iv**.******.****.**"     # no @ at all
    answer = AnswerPlan(answer_id=1, poll_id=2, display_name="Иван",
                        problems=[Problem(code="invalid_email", severity="attention",
                                          params={"value": "ivan petrov@mail.ru"})])
    text = render_report(_summary(answer), fmt="html", language="ru")
    assert "E-mail «iv** ******@mail.ru» не является корректным адресом" in text
    assert "ivan" not in text and "petrov" not in text


def _deal(key: str, programme: str) -> DealPlan:
    return DealPlan(origin_id=f"1:{key}", programme_key=key, programme_id=int(key), programme_title=programme,
                    action="create", command=f"d{key}", title=programme)


def test_a_problem_repeated_for_each_deal_says_which_deal_or_how_many_times():
    cut = {"field": "UF_CRM_COMMENT", "length": 400, "kept": 255}
    answer = AnswerPlan(answer_id=1, poll_id=2, display_name="Иван", deals=[_deal("10", "Экономика"),
                                                                            _deal("11", "Дизайн")],
                        problems=[Problem(code="value_cut", severity="warning", params={**cut, "programme": "Экономика"}),
                                  Problem(code="value_cut", severity="warning", params={**cut, "programme": "Дизайн"}),
                                  Problem(code="unknown_enum_value", severity="warning",
                                          params={"field": "UF_CRM_LEVEL", "value": "x", "known": ["a"]}),
                                  Problem(code="unknown_enum_value", severity="warning",
                                          params={"field": "UF_CRM_LEVEL", "value": "x", "known": ["a"]})])
    md = render_report(_summary(answer), fmt="md", language="ru")
    assert "записаны первые 255. — сделка по программе «Экономика»" in md
    assert "записаны первые 255. — сделка по программе «Дизайн»" in md
    # Once in its group and once in the answer's row, each saying it occurs twice, instead of four lines.
    assert md.count("поле оставлено пустым. (×2)") == 2 and md.count("поле оставлено пустым.") == 2


def test_counts_read_as_natural_russian():
    assert COUNTS["ru"]["needs_attention"] == "Требуют внимания"   # not "Ответов требуют внимания"
    assert COUNTS["ru"]["ready"] == "Готовы к синхронизации"


def test_a_russian_csv_opens_in_columns_in_a_russian_excel():
    answer = AnswerPlan(answer_id=1, poll_id=2, display_name="Иван", phone="+79161234567",
                        deals=[_deal("10", "Экономика, магистратура")])
    text = render_report(_summary(answer), fmt="csv", language="ru", show_personal_data=True)
    assert text.startswith("\ufeffrow_type;answer_id;") and not text.startswith("\ufeffsep=")
    row = next(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))
    assert row["programme"] == "Экономика, магистратура"   # a comma inside a cell stays in it
    assert row["phone"] == '="+79161234567"' and "'+7" not in text
    assert render_report(_summary(answer), fmt="csv", language="en").startswith("\ufeffrow_type,answer_id,")
