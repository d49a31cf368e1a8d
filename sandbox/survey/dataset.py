"""Polls and answers for the survey-platform emulator, sample and generated.

``build_dataset(answers=N, seed=S)`` gives the sample polls and answers from
``sandbox/sample_data`` verbatim, then ``N`` generated answers over a few generated
polls: the same bytes for the same seed. The generator produces on purpose what the
public sends and the platform does: ties in ``updated_at``, offsets other than
``+03:00``, edited answers, repeated people (email in another case or padded), phones
in every format, programmes with doubled spaces or unknown to the CRM, missing or
invalid emails, unknown levels, missing ``utm``/``cookies``/``meta``.

Answers are kept packed (``PackedAnswer``: ids, the ``updated_at`` instant and the
pre-serialised JSON bytes) so that 100,000 of them fit in a few tens of MB.
"""
from __future__ import annotations

import json
import random
from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from sandbox.survey.clock import format_rfc3339, parse_rfc3339, to_us
from sandbox.survey.vocabulary import (BAD_EMAILS, DOMAINS, EN_FIRST, EN_LAST, ODD_NAMES, RU_FEMALE, RU_LAST,
                                       RU_MALE, RU_PATRONYMIC, TEST_NETS, UNKNOWN_PROGRAMMES, UTM_CAMPAIGNS,
                                       UTM_MEDIUMS, UTM_SOURCES, UTM_TERMS, random_phone, translit)

SANDBOX_DIR = Path(__file__).resolve().parent.parent
SAMPLE_POLLS = SANDBOX_DIR / "sample_data" / "polls.json"
SAMPLE_ANSWERS = SANDBOX_DIR / "sample_data" / "answers.json"
PORTAL = SANDBOX_DIR / "portal.json"

POLL_STATUSES = ("active", "closed", "archived")
QUESTION_TYPES = ("text", "email", "phone", "number", "boolean", "single_choice", "multi_choice")


class PackedAnswer(NamedTuple):
    answer_id: int
    poll_id: int
    updated_us: int
    body: bytes  # the Answer as the API serves it (UTF-8 JSON)

    def decode(self) -> dict:
        return json.loads(self.body)


# JSON string literal of a str, non-ASCII kept as is (the C helper behind json.dumps).
_quote = json.encoder.encode_basestring


def dump_json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _is_int_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2 ** 53


def _is_answer_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_poll(poll: dict) -> None:
    """Raise ``ValueError`` naming the first way ``poll`` breaks the API's Poll schema."""
    if not isinstance(poll, dict):
        raise ValueError("a poll must be a JSON object")
    if not _is_int_id(poll.get("poll_id")):
        raise ValueError(f"poll_id must be a positive integer, got {poll.get('poll_id')!r}")
    for key in ("poll_name", "poll_language", "employee_email"):
        if not isinstance(poll.get(key), str):
            raise ValueError(f"poll {poll['poll_id']}: {key} must be a string")
    if poll.get("status") not in POLL_STATUSES:
        raise ValueError(f"poll {poll['poll_id']}: status must be one of {POLL_STATUSES}")
    for key in ("created_at", "updated_at"):
        parse_rfc3339(poll.get(key))
    for question in poll.get("questions", []):
        if not isinstance(question, dict) or not isinstance(question.get("code"), str) \
                or question.get("type") not in QUESTION_TYPES:
            raise ValueError(f"poll {poll['poll_id']}: bad question {question!r}")


def validate_answer(answer: dict) -> None:
    """Raise ``ValueError`` naming the first way ``answer`` breaks the API's Answer schema."""
    if not isinstance(answer, dict):
        raise ValueError("an answer must be a JSON object")
    for key in ("answer_id", "poll_id"):
        if not _is_int_id(answer.get(key)):
            raise ValueError(f"{key} must be a positive integer, got {answer.get(key)!r}")
    for key in ("created_at", "updated_at"):
        parse_rfc3339(answer.get(key))
    items = answer.get("answers")
    if not isinstance(items, list):
        raise ValueError(f"answer {answer['answer_id']}: answers must be a list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str) or "value" not in item \
                or not _is_answer_value(item["value"]):
            raise ValueError(f"answer {answer['answer_id']}: bad answer item {item!r}")
    for key in ("utm", "cookies"):
        if key in answer and not (isinstance(answer[key], dict)
                                  and all(isinstance(v, str) for v in answer[key].values())):
            raise ValueError(f"answer {answer['answer_id']}: {key} must map names to strings")
    if "meta" in answer and not isinstance(answer["meta"], dict):
        raise ValueError(f"answer {answer['answer_id']}: meta must be an object")


def pack_answer(answer: dict, *, validate: bool = True) -> PackedAnswer:
    if validate:
        validate_answer(answer)
    return PackedAnswer(answer["answer_id"], answer["poll_id"], to_us(parse_rfc3339(answer["updated_at"])),
                        dump_json(answer))


class Dataset:
    """Polls (plain dicts) and answers (packed), with unique ids."""

    def __init__(self, polls: Iterable[dict] = (), answers: Iterable[dict] = ()) -> None:
        self.polls: list[dict] = []
        self._answers: list[PackedAnswer] = []
        self._poll_ids: set[int] = set()
        self._answer_ids: set[int] = set()
        for poll in polls:
            self.add_poll(poll)
        for answer in answers:
            self.add_answer(answer)

    def add_poll(self, poll: dict) -> None:
        validate_poll(poll)
        if poll["poll_id"] in self._poll_ids:
            raise ValueError(f"duplicate poll_id {poll['poll_id']}")
        self._poll_ids.add(poll["poll_id"])
        self.polls.append(poll)

    def add_answer(self, answer: dict, *, validate: bool = True) -> PackedAnswer:
        return self.add_packed(pack_answer(answer, validate=validate))

    def add_packed(self, packed: PackedAnswer) -> PackedAnswer:
        if packed.answer_id in self._answer_ids:
            raise ValueError(f"duplicate answer_id {packed.answer_id}")
        self._answer_ids.add(packed.answer_id)
        self._answers.append(packed)
        return packed

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def packed(self) -> list[PackedAnswer]:
        return self._answers

    def answers(self) -> Iterator[dict]:
        """The answers as dicts, in insertion order (decoded one by one)."""
        return (packed.decode() for packed in self._answers)

    @classmethod
    def from_files(cls, polls_path: str | Path, answers_path: str | Path) -> "Dataset":
        """Load ``{"polls": [...]}`` and ``{"answers": [...]}`` files (the sample-data layout)."""
        polls = json.loads(Path(polls_path).read_text(encoding="utf-8"))["polls"]
        answers = json.loads(Path(answers_path).read_text(encoding="utf-8"))["answers"]
        return cls(polls, answers)

    @classmethod
    def samples(cls) -> "Dataset":
        """Exactly the sample polls and answers of ``sandbox/sample_data``."""
        return cls.from_files(SAMPLE_POLLS, SAMPLE_ANSWERS)


def build_dataset(*, answers: int, seed: int = 0, include_samples: bool = True) -> Dataset:
    """The samples (if asked) plus ``answers`` generated answers, deterministic for ``seed``."""
    if answers < 0:
        raise ValueError("answers must be >= 0")
    dataset = Dataset.samples() if include_samples else Dataset()
    if answers:
        _Generator(seed).fill(dataset, answers)
    return dataset


# --- generation -------------------------------------------------------------------------

_UNKNOWN_LEVELS = ["Неизвестный уровень", "Специалитет", "PhD", "Бакалавр"]
_LEVELS = ["Бакалавриат", "Магистратура", "Аспирантура"]
_REFERERS = ["https://example.edu/master/", "https://example.edu/bachelor/", "https://example.edu/open-day/",
             "https://example.edu/programs/data-science/", "https://t.me/example_edu"]
_USER_AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/129.0 Safari/537.36",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
                "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/129.0 Mobile Safari/537.36 YaBrowser/24.7"]
_COMMENTS = ["Хочу узнать про общежитие", "Есть ли бюджетные места?", "Can I study part-time?",
             "Перезвоните после 18:00, пожалуйста", "Вопрос про \"двойной диплом\"\nи стажировки", ""]
_POLL_TEMPLATES = [
    ("ru", "Опрос абитуриентов 2026"),
    ("en", "Master's open day 2026"),
    ("ru", "День открытых дверей: магистратура"),
    ("ru", "Регистрация на олимпиаду «Высшая проба»"),
    ("en", "Bachelor's admission webinar"),
    ("ru", "Летняя школа 2026"),
]
_NULL_EMAIL = "\x00null"  # marks a person whose email item is present but null
_OFFSETS = ["+03:00"] * 17 + ["Z", "+00:00", "+05:00", "+05:00"]
_SUFFIX_SECONDS = {"+03:00": 3 * 3600, "Z": 0, "+00:00": 0, "+05:00": 5 * 3600}
_BURSTS = [0, 0, 0, 1, 2, 5, 12]
_POOL_SIZE = 997
_LEVEL_ITEMS = [f'{{"code":"level","value":{_quote(v)}}}' for v in _LEVELS]
_UNKNOWN_LEVEL_ITEMS = [f'{{"code":"level","value":{_quote(v)}}}' for v in _UNKNOWN_LEVELS]


def _item(code: str, value: str) -> str:
    return f'{{"code":{_quote(code)},"value":{_quote(value)}}}'


def _email_item(email: str | None) -> str | None:
    if email is None:
        return None
    return '{"code":"email","value":null}' if email == _NULL_EMAIL else _item("email", email)


def _load_portal() -> tuple[list[str], list[str]]:
    portal = json.loads(PORTAL.read_text(encoding="utf-8"))
    emails = [user["EMAIL"] for user in portal["users"]]
    programmes = next(sp for sp in portal["smart_processes"] if sp["entityTypeId"] == 1040)["items"]
    return emails, [item["title"] for item in programmes]


class _Generator:
    """One seeded pass of generation.

    Every choice goes through ``self.rng.random()`` (a C call) rather than ``choice``
    or ``randrange``, and answers are written as JSON text directly: 100,000 answers
    must build in a few seconds.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.user_emails, self.programmes = _load_portal()
        self.people: list[tuple[str, str, str | None, str | None, str | None]] = []
        self._days: dict[int, str] = {}

    # Small fast helpers -------------------------------------------------------------------
    def pick(self, seq: list | tuple):
        return seq[int(self.r() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.r() * n)

    def distinct(self, seq: list[str], k: int) -> list[str]:
        chosen: list[str] = []
        while len(chosen) < min(k, len(seq)):
            item = seq[int(self.r() * len(seq))]
            if item not in chosen:
                chosen.append(item)
        return chosen

    def stamp(self, us: int, suffix: str) -> str:
        """``format_rfc3339`` for whole seconds, with the date part cached."""
        shift = _SUFFIX_SECONDS[suffix]
        days, secs = divmod(us // 1_000_000 + shift, 86_400)
        day = self._days.get(days)
        if day is None:
            day = self._days[days] = (datetime(1970, 1, 1) + timedelta(days=days)).strftime("%Y-%m-%d")
        hours, rest = divmod(secs, 3600)
        return f"{day}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{suffix}"

    # Polls --------------------------------------------------------------------------------
    def _polls(self, count: int, start: datetime) -> list[dict]:
        polls, poll_id = [], 430_200_000 + 1_000 + self.below(8_000)
        active_owners = [e for e in self.user_emails if e != "left.company@hse.ru"]
        for index in range(count):
            language, name = _POLL_TEMPLATES[index % len(_POLL_TEMPLATES)]
            poll_id += 7 + self.below(4_000)
            created = start - timedelta(days=3 + self.below(17), seconds=self.below(86_400))
            updated = created + timedelta(hours=self.below(72)) if self.r() < 0.5 else created
            owner = "left.company@hse.ru" if index == 3 else self.pick(active_owners)
            status = "archived" if index == 2 else "closed" if index == 4 else "active"
            options = self.distinct(self.programmes, 4 + self.below(7))
            if language == "en" and "Master of Data Science" not in options:
                options.append("Master of Data Science")
            questions = [{"code": "email", "title": "E-mail", "type": "email"}]
            if language == "ru":
                questions += [{"code": "phone", "title": "Телефон", "type": "phone"},
                              {"code": "last_name", "title": "Фамилия", "type": "text"},
                              {"code": "first_name", "title": "Имя", "type": "text"},
                              {"code": "middle_name", "title": "Отчество", "type": "text"},
                              {"code": "programs", "title": "Какие программы вам интересны?",
                               "type": "multi_choice", "options": options},
                              {"code": "level", "title": "Уровень", "type": "single_choice", "options": list(_LEVELS)},
                              {"code": "consent", "title": "Согласие на обработку персональных данных",
                               "type": "boolean"}]
            else:
                questions += [{"code": "first_name", "title": "First name", "type": "text"},
                              {"code": "last_name", "title": "Last name", "type": "text"},
                              {"code": "phone", "title": "Phone", "type": "phone"},
                              {"code": "programs", "title": "Programmes", "type": "multi_choice", "options": options},
                              {"code": "consent", "title": "I agree to the processing of my personal data",
                               "type": "boolean"}]
            if self.r() < 0.5:
                questions.append({"code": "graduation_year", "title": "Год окончания", "type": "number"})
            if self.r() < 0.5:
                questions.append({"code": "comment", "title": "Комментарий", "type": "text"})
            polls.append({
                "poll_id": poll_id, "poll_name": name, "poll_language": language, "employee_email": owner,
                "status": status,
                "created_at": format_rfc3339(to_us(created), "+03:00"),
                "updated_at": format_rfc3339(to_us(updated), "+03:00"),
                "questions": questions,
            })
        return polls

    # People -------------------------------------------------------------------------------
    # A person is kept as ready JSON items (first, last, middle or None), the raw email (None:
    # no email item; _NULL_EMAIL: a null one) and the email item as first typed.
    def _new_person(self, language: str) -> tuple[str, str, str | None, str | None, str | None]:
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
        if roll < 0.02:
            email = None
        elif roll < 0.03:
            email = _NULL_EMAIL
        elif roll < 0.045:
            email = pick(BAD_EMAILS)
        else:
            local = f"{translit(first)}.{translit(last)}"
            if r() < 0.6:
                local += str(1 + int(r() * 9_999))
            email = f"{local}@{pick(DOMAINS)}"
            if r() < 0.15:
                email = ".".join(part.capitalize() for part in email.split("."))
        return (_item("first_name", first), _item("last_name", last),
                None if middle is None else _item("middle_name", middle), email, _email_item(email))

    def _person(self, language: str) -> tuple[str, str, str | None, str | None, str | None]:
        r = self.r
        people = self.people
        if people and r() < 0.15:  # the same person again, email typed differently
            person = people[int(r() * len(people))]
            email = person[3]
            if email and "@" in email:
                roll = r()
                if roll < 0.5:
                    email = email.upper() if roll < 0.25 else f"  {email} " if roll < 0.4 else email.capitalize()
                    return person[0], person[1], person[2], email, _email_item(email)
            return person
        person = self._new_person(language)
        people.append(person)
        return person

    def _phone(self) -> str:
        return random_phone(self.r)

    # Answers ------------------------------------------------------------------------------
    def _programmes(self, options: list[str]) -> list[str]:
        r = self.r
        if r() < 0.03:
            return []
        roll = r()
        chosen = self.distinct(options, 1 if roll < 0.6 else 2 if roll < 0.9 else 3)
        roll = r()
        if roll < 0.03:
            chosen.append(self.pick(UNKNOWN_PROGRAMMES))
        elif roll < 0.06:
            index = self.below(len(chosen))
            spaced = chosen[index].replace(" ", "  ", 1)
            chosen[index] = spaced if spaced != chosen[index] else f" {chosen[index]}"
        elif roll < 0.07:
            chosen[0] += " "
        return chosen

    def _tail_pools(self) -> None:
        """Pools of ready ``utm`` and ``meta`` members (missing, empty or filled), picked per answer."""
        r, pick, q = self.r, self.pick, _quote
        self._utm_pool, self._meta_pool = [], []
        for _ in range(_POOL_SIZE):
            roll = r()
            if roll < 0.6:
                utm = f'"utm_source":{q(pick(UTM_SOURCES))},"utm_medium":{q(pick(UTM_MEDIUMS))}'
                if r() < 0.6:
                    utm += f',"utm_campaign":{q(pick(UTM_CAMPAIGNS))}'
                if r() < 0.3:
                    utm += f',"utm_term":{q(pick(UTM_TERMS))}'
                self._utm_pool.append(f',"utm":{{{utm}}}')
            else:
                self._utm_pool.append(',"utm":{}' if roll < 0.75 else "")
            roll = r()
            if roll < 0.7:
                meta = f'"referer":{q(pick(_REFERERS))}'
                if r() < 0.8:
                    meta += f',"user_agent":{q(pick(_USER_AGENTS))}'
                if r() < 0.8:
                    meta += f',"ip":"{pick(TEST_NETS)}.{1 + int(r() * 254)}"'
                self._meta_pool.append(f',"meta":{{{meta}}}')
            else:
                self._meta_pool.append(',"meta":{}' if roll < 0.8 else "")

    def _answer(self, answer_id: int, poll: dict, created_us: int, updated_us: int, suffix: str) -> str:
        """One Answer as compact JSON text (built directly: this is the generator's hot loop)."""
        r, q = self.r, _quote
        first, last, middle, _, email = self._person(poll["poll_language"])
        items: list[str] = []
        append = items.append
        for question in poll["questions"]:
            code = question["code"]
            if code == "email":
                if email is not None:
                    append(email)
            elif code == "phone":
                if r() < 0.8:
                    append(f'{{"code":"phone","value":{q(self._phone())}}}')
            elif code == "first_name":
                append(first)
            elif code == "last_name":
                if r() < 0.95:
                    append(last)
            elif code == "middle_name":
                if middle is not None:
                    append(middle)
            elif code == "programs":
                if r() < 0.98:
                    chosen = ",".join(map(q, self._programmes(question["options"])))
                    append(f'{{"code":"programs","value":[{chosen}]}}')
            elif code == "level":
                roll = r()
                if roll < 0.8:
                    append(_LEVEL_ITEMS[int(roll * 3.75)])
                elif roll < 0.84:
                    append(_UNKNOWN_LEVEL_ITEMS[int((roll - 0.8) * 100)])
            elif code == "consent":
                roll = r()
                if roll < 0.95:
                    append('{"code":"consent","value":true}' if roll < 0.9 else '{"code":"consent","value":false}')
            elif code == "graduation_year":
                if r() < 0.7:
                    append(f'{{"code":"graduation_year","value":{"null" if r() < 0.05 else 2024 + int(r() * 7)}}}')
            elif code == "comment":
                if r() < 0.2:
                    append(f'{{"code":"comment","value":{q(_COMMENTS[int(r() * len(_COMMENTS))])}}}')
        created = self.stamp(created_us, suffix)
        updated = created if updated_us == created_us else self.stamp(updated_us, suffix)
        roll = r()
        if roll < 0.5:
            stamp = created_us // 1_000_000
            cookies = f',"cookies":{{"_ga":"GA1.2.{1_000_000_000 + int(r() * 9_000_000_000)}.{stamp}"'
            if roll < 0.35:
                cookies += f',"_ym_uid":"{stamp}{100_000_000 + int(r() * 900_000_000)}"'
            cookies += "}"
        else:
            cookies = ',"cookies":{}' if roll < 0.6 else ""
        utm = self._utm_pool[int(r() * _POOL_SIZE)]
        meta = self._meta_pool[int(r() * _POOL_SIZE)]
        return (f'{{"answer_id":{answer_id},"poll_id":{poll["poll_id"]},"created_at":"{created}",'
                f'"updated_at":"{updated}","answers":[{",".join(items)}]{utm}{cookies}{meta}}}')

    def fill(self, dataset: Dataset, count: int) -> None:
        r = self.r
        start = datetime(2025, 9, 1, 9, 0, tzinfo=timezone(timedelta(hours=3)))
        poll_count = 1 if count < 10 else 3 if count < 10_000 else 5
        polls = self._polls(poll_count, start)
        for poll in polls:
            dataset.add_poll(poll)
        # Cumulative shares of the answers per poll.
        shares = [0.45, 0.75, 0.9, 0.96][:poll_count - 1]
        # Spread the answers over at most ~60 days of whole seconds; a third of them land
        # in the same second as the one before (ties), some in bursts of many per second.
        mean_gap = max(2.0, min(90.0, 60 * 86_400 / count))
        now_us = to_us(start)
        answer_id = 815_000_000 + self.below(1_000)
        burst = 0
        add_packed = dataset.add_packed
        self._tail_pools()
        for _ in range(count):
            if burst:
                burst -= 1
            elif r() < 0.35:
                if r() < 0.3:
                    burst = self.pick(_BURSTS)
            else:
                now_us += (1 + int(self.rng.expovariate(1 / mean_gap))) * 1_000_000
            answer_id += 1 + self.below(3)
            roll = r()
            poll = polls[bisect_right(shares, roll)]
            created_us = updated_us = now_us
            if r() < 0.05:  # edited later: same id, later updated_at
                updated_us = created_us + (1 + self.below(4 * 86_400)) * 1_000_000
            text = self._answer(answer_id, poll, created_us, updated_us, self.pick(_OFFSETS))
            add_packed(PackedAnswer(answer_id, poll["poll_id"], updated_us, text.encode("utf-8")))
