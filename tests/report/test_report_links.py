"""A real run's report names the records it made, and links them to their cards (issue 13, item 5)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sync.options import RunSummary
from sync.plan.models import AnswerPlan, ContactPlan, DealPlan, Plan, PollPlan
from sync.report.render import portal_url, render_report

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
WEBHOOK = "https://univer.bitrix24.ru/rest/169/s3cr3t-webhook-key/"


def real_run() -> RunSummary:
    answer = AnswerPlan(answer_id=814573982, poll_id=430131691, email="new.applicant@mail.ru",
                        display_name="Кузнецова Дарья", contact_email="new.applicant@mail.ru",
                        deals=[DealPlan(origin_id="814573982:104", programme_key="104", programme_id=104,
                                        programme_title="Экономика", action="create", command="da_1",
                                        title="Экономика — Кузнецова Дарья"),
                               DealPlan(origin_id="814573982:105", programme_key="105", programme_id=105,
                                        programme_title="Дизайн", action="update", deal_id=7001, command="du_1",
                                        title="Дизайн — Кузнецова Дарья")],
                        outcome="pushed", outcome_contact_id=5150, outcome_deal_ids={"104": 9301, "105": 7001})
    plan = Plan(answers=[answer],
                contacts=[ContactPlan(email="new.applicant@mail.ru", action="create", command="ca_1",
                                      answer_ids=[814573982])],
                polls=[PollPlan(poll_id=430131691, poll_name="Опрос", action="create", item_id=77, owner_id=1)])
    return RunSummary(run_id="r1", dry_run=False, started_at=T0, finished_at=T0, outcome="ok",
                      counts={"pushed": 1}, plan=plan)


def test_portal_url_keeps_the_host_and_never_the_secret():
    assert portal_url(WEBHOOK) == "https://univer.bitrix24.ru"
    assert portal_url("http://127.0.0.1:8082/rest/1/x/") == "http://127.0.0.1:8082"
    assert portal_url(None) is None and portal_url("portal.bitrix24.ru/rest/1/x/") is None


def test_a_real_runs_report_shows_the_ids_it_got_not_new():
    for fmt in ("md", "html"):
        text = render_report(real_run(), fmt=fmt, language="ru")
        assert "создан: ID 5150" in text and "создана: ID 9301" in text and "обновление, ID 7001" in text
        assert "создана: ID 77" in text  # the poll form
        assert "новый" not in text and "новая" not in text


def test_html_and_markdown_link_contacts_and_deals_to_their_cards():
    crm = portal_url(WEBHOOK)
    html = render_report(real_run(), fmt="html", language="ru", crm_url=crm)
    assert ('<a href="https://univer.bitrix24.ru/crm/contact/details/5150/" target="_blank" rel="noopener">'
            "создан: ID 5150</a>") in html
    assert '<a href="https://univer.bitrix24.ru/crm/deal/details/9301/"' in html
    assert '<a href="https://univer.bitrix24.ru/crm/deal/details/7001/"' in html
    md = render_report(real_run(), fmt="md", language="ru", crm_url=crm)
    assert "[создан: ID 5150](https://univer.bitrix24.ru/crm/contact/details/5150/)" in md
    assert "[создана: ID 9301](https://univer.bitrix24.ru/crm/deal/details/9301/)" in md
    data = json.loads(render_report(real_run(), fmt="json", language="ru", crm_url=crm))
    answer = data["plan"]["answers"][0]
    assert answer["contact"]["url"] == "https://univer.bitrix24.ru/crm/contact/details/5150/"
    assert [d["url"] for d in answer["deals"]] == ["https://univer.bitrix24.ru/crm/deal/details/9301/",
                                                   "https://univer.bitrix24.ru/crm/deal/details/7001/"]
    for text in (html, md, json.dumps(data)):
        assert "s3cr3t" not in text and "/rest/" not in text
