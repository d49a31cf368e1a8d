"""The whole answer as people read it on a deal: every question, UTM, cookies, page, consent, time.

Written once per answer version per deal; the tag ``[#<answer id>:<version>]`` lets the
next run find it (``sync.crm.deal_lookups``) instead of writing it again, and an edit
adds the new version, marked as such. Nothing the respondent sent is left out: codes
without a title in the mapping appear under their own names.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sync.mapping import FieldMapping
from sync.plan.models import PollContext
from sync.plan.normalize import clean_text
from sync.source.models import Answer

_TEXTS = {
    "ru": {"head": "Ответ на опрос «{poll}»", "edited": "изменённая версия", "at": "от {time}",
           "answers": "Ответы", "utm": "UTM-метки", "cookies": "Cookies", "page": "Страница", "form_kind": "Тип формы",
           "mailing": "Согласие на рассылку", "yes": "да", "no": "нет", "other": "Прочее",
           "kinds": {1: "консультация", 2: "регистрация"}},
    "en": {"head": "Answer to the poll «{poll}»", "edited": "edited version", "at": "at {time}",
           "answers": "Answers", "utm": "UTM tags", "cookies": "Cookies", "page": "Page", "form_kind": "Form kind",
           "mailing": "Mailing consent", "yes": "yes", "no": "no", "other": "Other",
           "kinds": {1: "consultation", 2: "registration"}},
}
_META_SHOWN = {"url", "form_kind", "mailingListSubscription"}


def summary_tag(answer_id: int, version: str) -> str:
    return f"[#{answer_id}:{version[:8]}]"


def answer_version(answer: Answer) -> str:
    """What the respondent sent, as 8 hex digits: the same in every store, whenever it was read.

    Not the ledger's content hash, which covers ``updated_at`` too: a lost store re-reading
    the same answer must recognise the summary it finds on the deal.
    """
    body = [answer.answer_id, answer.poll_id, answer.created_at.isoformat(),
            [[item.code, item.value] for item in answer.answers], answer.utm, answer.cookies, answer.meta]
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _text(value: Any, t: dict) -> str:
    if type(value) is str and value.isprintable():  # the common case, without clean_text's regex passes
        return value.strip()
    if isinstance(value, bool):
        return t["yes"] if value else t["no"]
    if isinstance(value, list):
        return ", ".join(_text(v, t) for v in value if v is not None)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v, t)}" for k, v in value.items())
    return clean_text(value, collapse_spaces=False)[0] if value is not None else ""


def local_time(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%d.%m.%Y %H:%M")


def summary_text(answer: Answer, poll: PollContext, mapping: FieldMapping, *, version: str, edited: bool) -> str:
    s = mapping.deal.summary
    t = _TEXTS[s.language]
    head = t["head"].format(poll=poll.poll_name or poll.poll_id) + " " + t["at"].format(
        time=local_time(answer.created_at, mapping.time_zone))
    if edited:
        head += f" ({t['edited']})"
    lines = [f"{head} {summary_tag(answer.answer_id, version)}", "", f"{t['answers']}:"]
    for item in answer.answers:
        value = _text(item.value, t)
        if value:
            lines.append(f"• {s.titles.get(item.code, item.code)}: {value}")
    utm = [(k, _text(v, t)) for k, v in answer.utm.items()]
    if any(v for _, v in utm):
        lines += ["", f"{t['utm']}:"] + [f"• {k}: {v}" for k, v in utm if v]
    cookies = [(k, _text(v, t)) for k, v in answer.cookies.items()]
    if any(v for _, v in cookies):
        lines += ["", f"{t['cookies']}:"] + [f"• {k}: {v}" for k, v in cookies if v]
    meta = answer.meta
    extra = []
    if meta.get("url"):
        extra.append(f"• {t['page']}: {_text(meta['url'], t)}")
    if meta.get("form_kind") is not None:
        kind = meta["form_kind"]
        extra.append(f"• {t['form_kind']}: {t['kinds'].get(kind, _text(kind, t))}")
    if meta.get("mailingListSubscription") is not None:
        extra.append(f"• {t['mailing']}: {_text(meta['mailingListSubscription'], t)}")
    extra += [f"• {k}: {_text(v, t)}" for k, v in meta.items() if k not in _META_SHOWN and _text(v, t)]
    if extra:
        lines += ["", f"{t['other']}:"] + extra
    return "\n".join(lines)
