"""The survey emulator's data in the admissions office's real vocabulary (real-portal.md).

The real portal pushes ``postPoll``/``postAnswer`` packets; the emulator serves the pull
API. ``build_real_dataset(answers=N, seed=S)`` gives:

* the sample deliveries of ``sandbox/sample_data/real`` converted to the pull API's shape
  (:func:`answer_from_push`, :func:`poll_from_push`) -- the same conversion the intake's
  inbox applies, so a run over the emulator and a run over the inbox see the same answers;
* ``N`` generated answers written as ``postAnswer`` packets with the real question codes
  (``firstname`` … ``educational_program_1`` … ``hse_school``) and programme names taken
  from universal list 18 of ``sandbox/real-portal.json``, then converted the same way.

The generator makes the same hazards as the smart-process one: repeated people (e-mail
in another case or padded), doubled spaces and stray case in programme names, programmes
the CRM does not hold, missing and invalid e-mails, edited answers, ties in
``updated_at``. Same seed, same bytes.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from sandbox.survey.clock import from_us, parse_rfc3339, to_us
from sandbox.survey.dataset import SANDBOX_DIR, Dataset
from sandbox.survey.vocabulary import (BAD_EMAILS, DOMAINS, EN_FIRST, EN_LAST, ODD_NAMES, RU_FEMALE, RU_LAST,
                                       RU_MALE, RU_PATRONYMIC, TEST_NETS, UNKNOWN_PROGRAMMES, UTM_CAMPAIGNS,
                                       UTM_MEDIUMS, UTM_SOURCES, UTM_TERMS, random_phone, translit)

REAL_SAMPLE_POLLS = SANDBOX_DIR / "sample_data" / "real" / "polls.json"
REAL_SAMPLE_ANSWERS = SANDBOX_DIR / "sample_data" / "real" / "answers.json"
REAL_PORTAL = SANDBOX_DIR / "real-portal.json"
PROGRAMMES_LIST_ID = 18

# header_data keys with a field of their own in the pull shape; the rest goes to meta
_HEADER_OWN = ("poll_id", "answer_id", "create_time", "analytics")
# analytics keys with a field of their own; the rest (url, ip, date, timeZone, ...) goes to meta
_ANALYTICS_OWN = ("params", "cookies")
MOSCOW = timezone(timedelta(hours=3))


# --- conversion of pushed packets -------------------------------------------------------

def answer_from_push(body: dict[str, Any], *, updated_at: str | None = None) -> dict[str, Any]:
    """A ``postAnswer`` packet as the pull API's Answer.

    ``created_at`` is ``create_time``; ``updated_at`` the same unless given (a push carries
    no edit time); ``answers`` each ``data`` code and value in order; ``utm`` is
    ``analytics.params``, ``cookies`` ``analytics.cookies``; ``meta`` the rest of
    ``analytics`` and ``header_data`` (url, ip, date, timeZone, mailingListSubscription,
    form_kind, gid). Absent parts stay absent rather than becoming empty objects.
    """
    header = body["header_data"]
    analytics = header.get("analytics") or {}
    meta = {k: v for k, v in analytics.items() if k not in _ANALYTICS_OWN}
    meta.update({k: v for k, v in header.items() if k not in _HEADER_OWN and k not in meta})
    answer: dict[str, Any] = {
        "answer_id": header["answer_id"], "poll_id": header["poll_id"],
        "created_at": header["create_time"], "updated_at": updated_at or header["create_time"],
        "answers": [{"code": code, "value": value} for code, value in (body.get("data") or {}).items()],
    }
    for key, part in (("utm", "params"), ("cookies", "cookies")):
        if part in analytics:
            answer[key] = analytics[part]
    answer["meta"] = meta
    return answer


def poll_from_push(body: dict[str, Any], *, created_at: str, updated_at: str | None = None) -> dict[str, Any]:
    """A ``postPoll`` packet as the pull API's Poll: ``express_poll_id`` and ``name`` (the
    packet's old key names) stand in for missing ``poll_id``/``poll_name``; ``user_id`` and
    other extra keys are dropped. A push carries no times, so the caller gives them."""
    poll_id = body.get("poll_id", body.get("express_poll_id"))
    name = body.get("poll_name", body.get("name"))
    return {"poll_id": poll_id, "poll_name": name if name is not None else "",
            "poll_language": body.get("poll_language") or "", "employee_email": body.get("employee_email") or "",
            "status": "active", "created_at": created_at, "updated_at": updated_at or created_at}


def _utc_ms(us: int) -> str:
    """``create_time``'s format: UTC with milliseconds."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.") + f"{us // 1000 % 1000:03d}Z"


def real_samples() -> Dataset:
    """The sample deliveries of ``sandbox/sample_data/real`` in the pull API's shape.

    A poll is registered an hour before its first answer. An answer whose poll was never
    registered (814573991) still needs a poll to be listed under in the pull API: it gets
    one with an empty name, language and owner, which is all the job can know of it.
    """
    pushed_polls = json.loads(REAL_SAMPLE_POLLS.read_text(encoding="utf-8"))["postPoll"]
    answers = [answer_from_push(body)
               for body in json.loads(REAL_SAMPLE_ANSWERS.read_text(encoding="utf-8"))["postAnswer"]]
    first_us: dict[int, int] = {}
    for answer in answers:
        us = to_us(parse_rfc3339(answer["created_at"]))
        first_us[answer["poll_id"]] = min(us, first_us.get(answer["poll_id"], us))
    earliest = min(first_us.values())
    polls = []
    for body in pushed_polls:
        poll_id = body.get("poll_id", body.get("express_poll_id"))
        polls.append(poll_from_push(body, created_at=_utc_ms(first_us.get(poll_id, earliest) - 3600 * 10**6)))
    registered = {poll["poll_id"] for poll in polls}
    for poll_id in sorted(set(first_us) - registered):
        polls.append(poll_from_push({"poll_id": poll_id}, created_at=_utc_ms(first_us[poll_id])))
    return Dataset(polls, answers)


def build_real_dataset(*, answers: int, seed: int = 0, include_samples: bool = True) -> Dataset:
    """The real samples (if asked) plus ``answers`` generated answers, deterministic for ``seed``."""
    if answers < 0:
        raise ValueError("answers must be >= 0")
    dataset = real_samples() if include_samples else Dataset()
    if answers:
        _RealGenerator(seed).fill(dataset, answers)
    return dataset


def real_programme_names() -> list[str]:
    """Distinct ``NAME``s of list 18 (active and inactive), in the portal file's order."""
    portal = json.loads(REAL_PORTAL.read_text(encoding="utf-8"))
    elements = next(lst for lst in portal["lists"] if int(lst["IBLOCK_ID"]) == PROGRAMMES_LIST_ID)["elements"]
    return list(dict.fromkeys(element["NAME"] for element in elements))


def _portal_owners() -> list[str]:
    portal = json.loads(REAL_PORTAL.read_text(encoding="utf-8"))
    return [user["EMAIL"] for user in portal["users"]]


# --- generation -------------------------------------------------------------------------

_POLL_TEMPLATES = [("ru", "Опрос абитуриентов 2026"), ("ru", "Задать вопрос о программе"),
                   ("en", "Open Day registration 2026"), ("ru", "День открытых дверей: бакалавриат"),
                   ("ru", "Регистрация на олимпиаду «Высшая проба»")]
_STATUSES = ["Учащийся 9-10 классов", "Учащийся 11 класса", "Выпускник школы", "Студент колледжа", "Родитель"]
_ACHIEVEMENTS = ["Олимпиада «Высшая проба», призёр", "Всероссийская олимпиада, финалист", "Не участвовал(а)"]
_CITIES = ["Москва", "Санкт-Петербург", "Нижний Новгород", "Пермь", "Казань", "Екатеринбург", "Минск", "Алматы"]
_HOW_HEARD = ["От друзей", "Реклама ВКонтакте", "Сайт университета", "Школа", "Telegram"]
_COUNTRIES = ["643", "112", "398", "826", "156"]  # the portal's country directory sends numeric codes
_BURSTS = [0, 0, 0, 1, 2, 5, 12]
_UNKNOWN_OWNER = "nobody@hse.ru"


class _RealGenerator:
    """One seeded pass: packets built as dicts, then converted like the samples.

    Every draw goes through ``self.r`` (one ``random.Random(seed)``), so the order of
    draws is the format: reorder them and every seed's data changes.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.programmes = real_programme_names()
        self.owners = _portal_owners()
        # (firstname, lastname, middlename or None, email or None), as first typed
        self.people: list[tuple[str, str, str | None, str | None]] = []

    def pick(self, seq: list | tuple):
        return seq[int(self.r() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.r() * n)

    def distinct(self, seq: list[str], k: int) -> list[str]:
        chosen: list[str] = []
        while len(chosen) < min(k, len(seq)):
            item = self.pick(seq)
            if item not in chosen:
                chosen.append(item)
        return chosen

    def _polls(self, count: int, start_us: int) -> list[dict]:
        polls, poll_id = [], 430_300_000 + self.below(9_000)
        active = [e for e in self.owners if e != "left.company@hse.ru"]
        for index in range(count):
            language, name = _POLL_TEMPLATES[index % len(_POLL_TEMPLATES)]
            poll_id += 7 + self.below(4_000)
            # Owners as the portal sends them: mostly staff, one who left, one the CRM never had.
            owner = "left.company@hse.ru" if index == 3 else _UNKNOWN_OWNER if index == 4 else self.pick(active)
            created_us = start_us - (3 + self.below(17)) * 86_400 * 10**6 - self.below(86_400) * 10**6
            poll = poll_from_push({"poll_id": poll_id, "poll_name": name, "poll_language": language,
                                   "employee_email": owner}, created_at=_utc_ms(created_us))
            poll["questions"] = [{"code": code, "type": kind} for code, kind in (
                ("lastname", "text"), ("firstname", "text"), ("middlename", "text"), ("email", "email"),
                ("telephone", "phone"), ("educational_program_1", "multi_choice"),
                ("additionalfield1", "single_choice"), ("additionalfield2", "text"), ("additionalfield3", "text"),
                ("hse_school", "text"))]
            poll["questions"][5]["options"] = self.distinct(self.programmes, 4 + self.below(8))
            polls.append(poll)
        return polls

    def _new_person(self, language: str) -> tuple[str, str, str | None, str | None]:
        r, pick = self.r, self.pick
        if r() < 0.01:
            first, last = pick(ODD_NAMES)
            middle = None
        elif r() < (0.85 if language == "ru" else 0.3):
            female = r() < 0.55
            first = pick(RU_FEMALE if female else RU_MALE)
            last = pick(RU_LAST) + ("а" if female else "")
            middle = pick(RU_PATRONYMIC) + ("на" if female else "ич") if r() < 0.7 else None
        else:
            first, last, middle = pick(EN_FIRST), pick(EN_LAST), None
        roll = r()
        if roll < 0.03:
            email = None  # the question was left out or not answered: no key in data
        elif roll < 0.045:
            email = pick(BAD_EMAILS)
        else:
            local = f"{translit(first)}.{translit(last)}"
            if r() < 0.6:
                local += str(1 + self.below(9_999))
            email = f"{local}@{pick(DOMAINS)}"
        return first, last, middle, email

    def _person(self, language: str) -> tuple[str, str, str | None, str | None]:
        r = self.r
        if self.people and r() < 0.15:  # the same person again, e-mail typed differently
            first, last, middle, email = self.pick(self.people)
            if email and "@" in email:
                roll = r()
                if roll < 0.5:
                    email = email.upper() if roll < 0.25 else f"  {email} " if roll < 0.4 else email.capitalize()
            return first, last, middle, email
        person = self._new_person(language)
        self.people.append(person)
        return person

    def _programmes(self, options: list[str]) -> list[str]:
        r = self.r
        if r() < 0.04:
            return []
        roll = r()
        chosen = self.distinct(options, 1 if roll < 0.6 else 2 if roll < 0.9 else 3)
        roll = r()
        if roll < 0.04:
            chosen.append(self.pick(UNKNOWN_PROGRAMMES))
        elif roll < 0.07:
            index = self.below(len(chosen))
            spaced = chosen[index].replace(" ", "  ", 1)
            chosen[index] = spaced if spaced != chosen[index] else f" {chosen[index]}"
        elif roll < 0.08:
            chosen[0] = chosen[0].lower()  # "философия": the CRM's name in another case
        elif roll < 0.09:
            chosen[0] += " "
        return chosen

    def _data(self, poll: dict) -> dict[str, Any]:
        r, pick = self.r, self.pick
        first, last, middle, email = self._person(poll["poll_language"])
        data: dict[str, Any] = {}
        if r() < 0.97:
            data["lastname"] = last
        data["firstname"] = first
        if middle is not None:
            data["middlename"] = middle
        if email is not None:
            data["email"] = email
        if r() < 0.8:
            data["telephone"] = random_phone(r)
        roll = r()
        if roll < 0.95:
            data["educational_program_1"] = self._programmes(poll["questions"][5]["options"])
        if r() < 0.6:
            data["additionalfield1"] = pick(_STATUSES)
        if r() < 0.15:
            data["additionalfield2"] = pick(_ACHIEVEMENTS)
        if r() < 0.5:
            data["additionalfield3"] = pick(_CITIES)
        if r() < 0.05:
            data["additionalfield4"] = pick(_HOW_HEARD)
        if r() < 0.02:
            data["additionalfield5"] = "Перезвоните после 18:00, пожалуйста"
        if r() < 0.3:
            data["hse_school"] = str(1 + self.below(2_000))
        if r() < 0.05:  # codes an author added to one form only
            data["country"] = pick(_COUNTRIES)
            data["birthdate"] = f"{2006 + self.below(4)}-{1 + self.below(12):02d}-{1 + self.below(28):02d}"
        return data

    def _analytics(self, poll_id: int, created_us: int) -> dict[str, Any]:
        r, pick = self.r, self.pick
        params: dict[str, str] = {}
        if r() < 0.6:
            # The portal forwards the page's query: empty utm_term/utm_content are common.
            params = {"utm_source": pick(UTM_SOURCES), "utm_medium": pick(UTM_MEDIUMS),
                      "utm_campaign": pick(UTM_CAMPAIGNS) if r() < 0.7 else "",
                      "utm_term": pick(UTM_TERMS) if r() < 0.3 else "", "utm_content": ""}
            if r() < 0.2:
                params["yclid" if r() < 0.5 else "gclid"] = str(10**15 + self.below(9 * 10**15))
        cookies: dict[str, str] = {}
        if r() < 0.7:
            stamp = created_us // 10**6
            cookies["_ga"] = f"GA1.2.{1_000_000_000 + self.below(9_000_000_000)}.{stamp}"
            if r() < 0.6:
                cookies["_ym_uid"] = f"{stamp}{100_000_000 + self.below(900_000_000)}"
            if r() < 0.5:
                cookies["roistat_visit"] = str(8_000_000 + self.below(2_000_000))
        local = from_us(created_us).astimezone(MOSCOW)
        return {"url": f"https://ba.hse.ru/polls/{poll_id}.html", "params": params, "cookies": cookies,
                "ip": f"{pick(TEST_NETS)}.{1 + self.below(254)}", "date": local.strftime("%Y-%m-%d %H:%M"),
                "timeZone": "Europe/Moscow", "mailingListSubscription": r() < 0.6}

    def _packet(self, answer_id: int, poll: dict, created_us: int) -> dict[str, Any]:
        r = self.r
        roll = r()
        header = {"poll_id": poll["poll_id"], "answer_id": answer_id, "create_time": _utc_ms(created_us),
                  "form_kind": None if roll < 0.2 else 1 if roll < 0.45 else 2,
                  "gid": 10 + self.below(5) if r() < 0.1 else None,
                  "analytics": self._analytics(poll["poll_id"], created_us)}
        return {"header_data": header, "data": self._data(poll)}

    def fill(self, dataset: Dataset, count: int) -> None:
        r = self.r
        # After the samples (2025-10-22), so a dataset with both keeps the samples first.
        start_us = to_us(datetime(2025, 11, 3, 9, 0, tzinfo=MOSCOW))
        poll_count = 1 if count < 10 else 3 if count < 10_000 else 5
        polls = self._polls(poll_count, start_us)
        for poll in polls:
            dataset.add_poll(poll)
        shares = [0.45, 0.75, 0.9, 0.96][:poll_count - 1]
        mean_gap = max(2.0, min(90.0, 60 * 86_400 / count))
        now_us = start_us
        answer_id = 815_500_000 + self.below(1_000)
        burst = 0
        for _ in range(count):
            # A third of the answers share the instant of the one before (ties), some in bursts.
            if burst:
                burst -= 1
            elif r() < 0.35:
                if r() < 0.3:
                    burst = self.pick(_BURSTS)
            else:
                now_us += (1 + int(self.rng.expovariate(1 / mean_gap))) * 10**6 + self.below(1000) * 1000
            answer_id += 1 + self.below(3)
            roll = r()
            poll = polls[sum(1 for share in shares if roll >= share)]
            packet = self._packet(answer_id, poll, now_us)
            updated_us = now_us
            if r() < 0.05:  # edited later: same id, later updated_at
                updated_us = now_us + (1 + self.below(4 * 86_400)) * 10**6
            dataset.add_answer(answer_from_push(packet, updated_at=_utc_ms(updated_us)))
