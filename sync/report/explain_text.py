"""``cli.py explain`` as text (Russian or English, ``REPORT_LANGUAGE``) and as JSON.

Field lines read ``UTM_SOURCE ← utm:utm_source = "yandex" — записывается``: the CRM field,
the mapping rule, the value the rule gives for this answer, and what the job does with it.
Problems are worded by ``sync.report.texts`` exactly as the run report words them.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sync.explain import Explanation, FieldLine, RecordLine, problem_of
from sync.report.texts import Language, check_language, problem_message, problem_text, time_text

WORDS: dict[str, dict[str, str]] = {
    "ru": {
        "answer": "Ответ {answer_id} · опрос {poll_id}{poll_name} · источник: {source}",
        "source_api": "API платформы опросов", "source_intake": "приёмник (intake)",
        "ledger": "В журнале: {status} · впервые получен {first_seen} · версия от {updated}{pushed}{attempts}",
        "pushed_at": " · записан в CRM {at}", "attempts": " · попыток: {n}",
        "not_pushed_current": "Текущая версия ещё не записана в CRM: её запишет следующая синхронизация.",
        "error": "Последняя ошибка: {error}",
        "versions": "Версии", "version": "{n}. {at} · хэш {hash} · доставок: {deliveries}",
        "current": " · текущая", "current_pushed": " · текущая, записана в CRM", "changed": " · изменено: {codes}",
        "offline": "Без обращения к CRM (--offline или не задан BITRIX24_WEBHOOK_URL): справочники пусты, поэтому ниже — правила и значения из "
                   "ответа, сделки из журнала, проблемы — записанные при последней синхронизации.",
        "contact": "Контакт {id}", "contact_new": "Контакт (будет создан)",
        "deal": "Сделка {id}", "deal_new": "Сделка (будет создана)",
        "no_records": "Записей в CRM нет: ответ не дошёл до контакта и сделок (см. проблемы).",
        "programme": " «{title}»", "programme_key": " (элемент программы {key})", "no_programme": " (без программы)",
        "act_contact_create": "создаётся этим ответом", "act_contact_reuse": "найден по e-mail",
        "act_contact_update": "найден по e-mail, дополняется пустыми полями", "act_contact_known": "из журнала",
        "act_deal_create": "будет создана следующей синхронизацией", "act_deal_update": "сделка этого ответа",
        "act_deal_reuse": "существующая сделка контакта: дополняются только пустые поля",
        "act_deal_known": "из журнала",
        "out_sent": "записывается", "out_kept": "не меняется: в CRM уже {crm}", "out_empty": "в ответе нет значения",
        "out_create_only_deal": "только при создании сделки", "out_create_only_contact": "только при создании контакта",
        "out_not_sent": "не записывается", "out_unknown": "",
        "out_cleared": "очищается: в этой версии ответа значения нет",
        "out_kept_group": "не меняется: UTM-метки — одна атрибуция, а у сделки уже есть своя ({crm})",
        "out_not_sent_reuse": "не записывается: сделка заведена не этим ответом, в ней заполняются только пустые поля",
        "summary_rule": "весь ответ, один раз на версию (deal.summary.to = {to})",
        "summary_kept": "не повторяется: эта версия ответа уже есть в сделке",
        "none": "нет значения",
        "problems": "Проблемы", "problems_ledger": "Проблемы (записанные при последней синхронизации)",
        "no_problems": "Проблем нет.", "advice": "Что делать: {advice}",
        "status_pending": "ожидает синхронизации", "status_changed": "изменён после синхронизации",
        "status_in_flight": "записывается (результат неизвестен)", "status_pushed": "синхронизирован",
        "status_failed": "не записан (будет повторён)", "status_needs_attention": "требует внимания",
        "sev_attention": "требует внимания", "sev_warning": "предупреждение", "sev_info": "к сведению",
    },
    "en": {
        "answer": "Answer {answer_id} · poll {poll_id}{poll_name} · source: {source}",
        "source_api": "the survey platform's API", "source_intake": "the intake",
        "ledger": "In the ledger: {status} · first seen {first_seen} · version of {updated}{pushed}{attempts}",
        "pushed_at": " · written to the CRM {at}", "attempts": " · attempts: {n}",
        "not_pushed_current": "The current version is not in the CRM yet: the next sync writes it.",
        "error": "Last error: {error}",
        "versions": "Versions", "version": "{n}. {at} · hash {hash} · deliveries: {deliveries}",
        "current": " · current", "current_pushed": " · current, written to the CRM", "changed": " · changed: {codes}",
        "offline": "Without the CRM (--offline, or BITRIX24_WEBHOOK_URL not set): the look-ups are empty, so below are the rules and the answer's "
                   "values, deals from the ledger, and the problems recorded at the last sync.",
        "contact": "Contact {id}", "contact_new": "Contact (to be created)",
        "deal": "Deal {id}", "deal_new": "Deal (to be created)",
        "no_records": "No CRM records: the answer did not get as far as a contact and deals (see the problems).",
        "programme": " «{title}»", "programme_key": " (programme element {key})", "no_programme": " (no programme)",
        "act_contact_create": "created by this answer", "act_contact_reuse": "found by e-mail",
        "act_contact_update": "found by e-mail, empty fields filled", "act_contact_known": "from the ledger",
        "act_deal_create": "the next sync creates it", "act_deal_update": "this answer's own deal",
        "act_deal_reuse": "the contact's existing deal: only empty fields are filled",
        "act_deal_known": "from the ledger",
        "out_sent": "written", "out_kept": "left as is: the CRM has {crm}", "out_empty": "the answer has no value",
        "out_create_only_deal": "only when the deal is created",
        "out_create_only_contact": "only when the contact is created",
        "out_not_sent": "not written", "out_unknown": "",
        "out_cleared": "cleared: this version of the answer has no value",
        "out_kept_group": "left as is: the UTM fields are one attribution and the deal has its own ({crm})",
        "out_not_sent_reuse": "not written: the deal was not made by this answer, only its empty fields are filled",
        "summary_rule": "the whole answer, once per version (deal.summary.to = {to})",
        "summary_kept": "not repeated: the deal carries this version of the answer already",
        "none": "no value",
        "problems": "Problems", "problems_ledger": "Problems (recorded at the last sync)",
        "no_problems": "No problems.", "advice": "What to do: {advice}",
        "status_pending": "waiting for a sync", "status_changed": "changed since its sync",
        "status_in_flight": "being written (outcome unknown)", "status_pushed": "synced",
        "status_failed": "not written (will be retried)", "status_needs_attention": "needs attention",
        "sev_attention": "needs attention", "sev_warning": "warning", "sev_info": "note",
    },
}


def _value(value: Any, language: str) -> str:
    if value is None or value == "":
        return WORDS[language]["none"]
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _field_line(line: FieldLine, kind: str, language: str, summary_to: str) -> str:
    w = WORDS[language]
    if line.rule == "deal.summary":
        text = f"{line.field} ← {w['summary_rule'].format(to=summary_to)}"
    else:
        text = f"{line.field} ← {line.rule} = {_value(line.value, language)}"
    if line.rule == "deal.summary" and line.outcome == "kept":
        outcome = w["summary_kept"]
    elif line.outcome == "kept":
        outcome = w["out_kept"].format(crm=_value(line.crm, language))
    elif line.outcome == "kept_group":
        outcome = w["out_kept_group"].format(crm=line.crm)
    elif line.outcome == "create_only":
        outcome = w[f"out_create_only_{kind}"]
    elif line.outcome == "sent" and line.sent is not None and line.sent != line.value and line.rule != "deal.summary":
        outcome = f"{w['out_sent']}: {_value(line.sent, language)}"  # e.g. a cut or normalised value
    else:
        outcome = w[f"out_{line.outcome}"]
    return f"  {text} — {outcome}" if outcome else f"  {text}"


def _record(record: RecordLine, language: str, summary_to: str) -> list[str]:
    w = WORDS[language]
    if record.id is None:
        head = w[f"{record.kind}_new"]
    else:
        head = w[record.kind].format(id=record.id)
    if record.kind == "deal":
        if record.programme:
            head += w["programme"].format(title=record.programme)
        elif record.programme_key and record.programme_key != "0":
            head += w["programme_key"].format(key=record.programme_key)
        else:
            head += w["no_programme"]
    if record.url:
        head += f" — {record.url}"
    head += f" ({w[f'act_{record.kind}_{record.action}']})"
    return [head] + [_field_line(f, record.kind, language, summary_to) for f in record.fields]


def _when(moment: datetime | None) -> str:
    return time_text(moment)


def render_text(ex: Explanation, language: Language = "ru") -> str:
    """The explanation as plain text for staff, in ``language``."""
    check_language(language)
    w = WORDS[language]
    lines = [w["answer"].format(answer_id=ex.answer_id, poll_id=ex.poll_id,
                                poll_name=f" «{ex.poll_name}»" if ex.poll_name else "",
                                source=w[f"source_{ex.source}"])]
    led = ex.ledger
    lines.append(w["ledger"].format(
        status=w.get(f"status_{led.status}", led.status), first_seen=_when(led.first_seen_at),
        updated=_when(led.updated_at), pushed=w["pushed_at"].format(at=_when(led.pushed_at)) if led.pushed_at else "",
        attempts=w["attempts"].format(n=led.attempts) if led.attempts else ""))
    if led.pushed_hash is not None and not led.pushed_current:
        lines.append(w["not_pushed_current"])
    if led.error:
        lines.append(w["error"].format(error=led.error))
    lines += ["", w["versions"]]
    for v in ex.versions:
        text = "  " + w["version"].format(n=v.number, at=_when(v.seen_at), hash=v.content_hash[:12],
                                          deliveries=v.deliveries)
        if v.current:
            text += w["current_pushed"] if led.pushed_current else w["current"]
        if v.changed:
            text += w["changed"].format(codes=", ".join(v.changed))
        lines.append(text)
    if ex.offline:
        lines += ["", w["offline"]]
    records = ([ex.contact] if ex.contact is not None else []) + ex.deals
    lines.append("")
    if not records:
        lines.append(w["no_records"])
    for record in records:
        lines += _record(record, language, ex.summary_to) + [""]
    if lines[-1] == "":
        lines.pop()
    lines += ["", w["problems_ledger" if ex.problems_from == "ledger" else "problems"]]
    if not ex.problems:
        lines.append("  " + w["no_problems"])
    for p in ex.problems:
        problem = problem_of(p)
        message = problem_message(p.code, language)
        lines.append(f"  [{w.get(f'sev_{p.severity}', p.severity)}] {message.title}: "
                     f"{problem_text(problem, language, show_personal_data=True)}")
        lines.append("    " + w["advice"].format(advice=message.advice))
    return "\n".join(lines) + "\n"


def render_json(ex: Explanation, language: Language = "ru") -> str:
    """The explanation as JSON; each problem also carries its title, text and advice in ``language``."""
    check_language(language)
    data = ex.model_dump(mode="json")
    data["language"] = language
    for item, p in zip(data["problems"], ex.problems):
        message = problem_message(p.code, language)
        item.update(title=message.title, text=problem_text(problem_of(p), language, show_personal_data=True),
                    advice=message.advice)
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)
