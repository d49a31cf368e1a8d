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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from sandbox.survey.clock import format_rfc3339, parse_rfc3339, to_us

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

_RU_MALE = ["Иван", "Алексей", "Дмитрий", "Сергей", "Андрей", "Михаил", "Никита", "Артём", "Павел", "Егор",
            "Илья", "Кирилл", "Максим", "Роман", "Фёдор", "Тимур", "Глеб", "Лев"]
_RU_FEMALE = ["Анна", "Мария", "Елена", "Дарья", "Ольга", "Екатерина", "Софья", "Полина", "Алиса",
              "Виктория", "Ксения", "Юлия", "Наталья", "Татьяна", "Алёна", "Вера", "Ульяна"]
_RU_LAST = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
            "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Захаров", "Зайцев", "Соловьёв"]
_RU_PATRONYMIC = ["Иванов", "Сергеев", "Александров", "Дмитриев", "Андреев", "Петров", "Михайлов", "Олегов",
                  "Викторов", "Юрьев"]
_EN_FIRST = ["James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sophia", "Wei",
             "Aisha", "Mateo", "Yuki", "Fatima", "Chloé", "Jürgen", "Priya"]
_EN_LAST = ["Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Chen", "Kim",
            "Müller", "Rossi", "O'Brien", "Nguyen", "Silva", "Kowalski", "Haddad", "Lee-Wong"]
_ODD_NAMES = [("Имя 🎓", "О'Коннор-Щукина"), ("Jean-Luc", "D'Artagnan"), ("Анна-Мария", "Римская-Корсакова"),
              ("  Пётр ", "Петров  "), ("ЁЖИК", "ёлкин")]
_TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                     ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
                      "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"]))
_DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "example.com", "inbox.ru", "bk.ru", "outlook.com", "edu.example.org"]
_BAD_EMAILS = ["not-an-email", "ivan@", "@mail.ru", "ivan petrov@mail.ru", "ivan@@mail.ru", "ivan@mail",
               "почта@", "test@example..com"]
_UNKNOWN_PROGRAMMES = ["Квантовая алхимия", "Астробиология", "Data Science (old)", "Прикладная магия",
                       "Юриспруденция цифровое право"]
_UNKNOWN_LEVELS = ["Неизвестный уровень", "Специалитет", "PhD", "Бакалавр"]
_LEVELS = ["Бакалавриат", "Магистратура", "Аспирантура"]
_UTM_SOURCES = ["yandex", "google", "vk", "telegram", "email", "partner", "hse.ru"]
_UTM_MEDIUMS = ["cpc", "organic", "social", "newsletter", "banner", "referral"]
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


def _translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower()).replace("'", "").replace(" ", "")


def _load_portal() -> tuple[list[str], list[str]]:
    portal = json.loads(PORTAL.read_text(encoding="utf-8"))
    emails = [user["EMAIL"] for user in portal["users"]]
    programmes = next(sp for sp in portal["smart_processes"] if sp["entityTypeId"] == 1040)["items"]
    return emails, [item["title"] for item in programmes]


class _Generator:
    """One seeded pass of generation; every choice goes through ``self.rng``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.user_emails, self.programmes = _load_portal()
        self.people: list[tuple[str, str, str, str | None, str | None]] = []  # lang, first, last, middle, email

    # Polls --------------------------------------------------------------------------------
    def _polls(self, count: int, start: datetime) -> list[dict]:
        rng = self.rng
        polls, poll_id = [], 430_200_000 + rng.randrange(1_000, 9_000)
        active_owners = [e for e in self.user_emails if e != "left.company@hse.ru"]
        for index in range(count):
            language, name = _POLL_TEMPLATES[index % len(_POLL_TEMPLATES)]
            poll_id += rng.randrange(7, 4_000)
            created = start - timedelta(days=rng.randrange(3, 20), seconds=rng.randrange(0, 86_400))
            updated = created + timedelta(hours=rng.randrange(0, 72)) if rng.random() < 0.5 else created
            owner = "left.company@hse.ru" if index == 3 or rng.random() < 0.1 else rng.choice(active_owners)
            status = "archived" if index == 2 else "closed" if index == 4 else "active"
            options = rng.sample(self.programmes, rng.randrange(4, 11))
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
            if rng.random() < 0.5:
                questions.append({"code": "graduation_year", "title": "Год окончания", "type": "number"})
            if rng.random() < 0.5:
                questions.append({"code": "comment", "title": "Комментарий", "type": "text"})
            offset = "+03:00"
            polls.append({
                "poll_id": poll_id, "poll_name": name, "poll_language": language, "employee_email": owner,
                "status": status,
                "created_at": format_rfc3339(to_us(created), offset),
                "updated_at": format_rfc3339(to_us(updated), offset),
                "questions": questions,
            })
        return polls

    # People -------------------------------------------------------------------------------
    def _new_person(self, language: str) -> tuple[str, str, str, str | None, str | None]:
        rng = self.rng
        cyrillic = rng.random() < (0.85 if language == "ru" else 0.3)
        if rng.random() < 0.01:
            first, last = rng.choice(_ODD_NAMES)
            middle = None
        elif cyrillic:
            female = rng.random() < 0.55
            first = rng.choice(_RU_FEMALE if female else _RU_MALE)
            last = rng.choice(_RU_LAST) + ("а" if female else "")
            middle = rng.choice(_RU_PATRONYMIC) + ("на" if female else "ич") if rng.random() < 0.7 else None
        else:
            first, last, middle = rng.choice(_EN_FIRST), rng.choice(_EN_LAST), None
        roll = rng.random()
        if roll < 0.02:
            email = None  # the answer will have no email item
        elif roll < 0.03:
            email = _NULL_EMAIL  # an email item whose value is null
        elif roll < 0.045:
            email = rng.choice(_BAD_EMAILS)
        else:
            local = f"{_translit(first.strip())}.{_translit(last.strip())}"
            if rng.random() < 0.6:
                local += str(rng.randrange(1, 10_000))
            email = f"{local}@{rng.choice(_DOMAINS)}"
            if rng.random() < 0.15:
                email = ".".join(part.capitalize() for part in email.split("."))
        return language, first, last, middle, email

    def _person(self, language: str) -> tuple[str, str, str, str | None, str | None]:
        rng = self.rng
        reusable = self.people and rng.random() < 0.15
        if reusable:
            _, first, last, middle, email = rng.choice(self.people)
            if email and "@" in email:
                roll = rng.random()
                if roll < 0.25:
                    email = email.upper()
                elif roll < 0.4:
                    email = f"  {email} "
                elif roll < 0.5:
                    email = email.capitalize()
            return language, first, last, middle, email
        person = self._new_person(language)
        self.people.append(person)
        return person

    @staticmethod
    def _digits(rng: random.Random) -> str:
        return f"9{rng.randrange(0, 100):02d}{rng.randrange(0, 10_000_000):07d}"

    def _phone(self) -> str:
        rng = self.rng
        d = self._digits(rng)
        fmt = rng.randrange(9)
        if fmt == 0:
            return f"8{d}"
        if fmt == 1:
            return f"+7 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
        if fmt == 2:
            return f"+7 {d[:3]} {d[3:6]}-{d[6:8]}-{d[8:]}"
        if fmt == 3:
            return f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
        if fmt == 4:
            return f"7-{d[:3]}-{d[3:6]}-{d[6:8]}-{d[8:]}"
        if fmt == 5:
            return rng.choice(["+44 20 7946 0958", "+1 (415) 555-0132", "+49 30 901820", "+375 29 123-45-67"])
        if fmt == 6 and rng.random() < 0.2:
            return rng.choice(["12345", "не помню", "+7 (916)"])
        return f"+7{d}"

    # Answers ------------------------------------------------------------------------------
    def _programmes(self, options: list[str]) -> list[str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            return []
        chosen = rng.sample(options, min(len(options), rng.choices((1, 2, 3), (60, 30, 10))[0]))
        roll = rng.random()
        if roll < 0.03:
            chosen.append(rng.choice(_UNKNOWN_PROGRAMMES))
        elif roll < 0.06:
            index = rng.randrange(len(chosen))
            spaced = chosen[index].replace(" ", "  ", 1)
            chosen[index] = spaced if spaced != chosen[index] else f" {chosen[index]}"
        elif roll < 0.07:
            chosen[0] += " "
        return chosen

    def _answer(self, answer_id: int, poll: dict, created_us: int, updated_us: int, offset: str) -> dict:
        rng = self.rng
        language, first, last, middle, email = self._person(poll["poll_language"])
        items: list[dict] = []
        for question in poll["questions"]:
            code = question["code"]
            if code == "email":
                if email is None:
                    continue
                items.append({"code": "email", "value": None if email == _NULL_EMAIL else email})
            elif code == "phone":
                if rng.random() < 0.8:
                    items.append({"code": "phone", "value": self._phone()})
            elif code == "first_name":
                items.append({"code": "first_name", "value": first})
            elif code == "last_name":
                if rng.random() < 0.95:
                    items.append({"code": "last_name", "value": last})
            elif code == "middle_name":
                if middle:
                    items.append({"code": "middle_name", "value": middle})
            elif code == "programs":
                if rng.random() < 0.98:
                    items.append({"code": "programs", "value": self._programmes(question["options"])})
            elif code == "level":
                roll = rng.random()
                if roll < 0.8:
                    items.append({"code": "level", "value": rng.choice(_LEVELS)})
                elif roll < 0.84:
                    items.append({"code": "level", "value": rng.choice(_UNKNOWN_LEVELS)})
            elif code == "consent":
                roll = rng.random()
                if roll < 0.95:
                    items.append({"code": "consent", "value": roll < 0.9})
            elif code == "graduation_year":
                if rng.random() < 0.7:
                    items.append({"code": code, "value": None if rng.random() < 0.05 else rng.randrange(2024, 2031)})
            elif code == "comment":
                if rng.random() < 0.2:
                    items.append({"code": code, "value": rng.choice(_COMMENTS)})
        answer: dict[str, Any] = {
            "answer_id": answer_id,
            "poll_id": poll["poll_id"],
            "created_at": format_rfc3339(created_us, offset),
            "updated_at": format_rfc3339(updated_us, offset),
            "answers": items,
        }
        roll = rng.random()
        if roll < 0.6:
            utm = {"utm_source": rng.choice(_UTM_SOURCES), "utm_medium": rng.choice(_UTM_MEDIUMS)}
            if rng.random() < 0.6:
                utm["utm_campaign"] = rng.choice(["master-2026", "bachelor-2026", "open-day", "olymp"])
            if rng.random() < 0.3:
                utm["utm_term"] = rng.choice(["юрист", "data science", "магистратура", "экономика"])
            answer["utm"] = utm
        elif roll < 0.75:
            answer["utm"] = {}
        roll = rng.random()
        if roll < 0.5:
            stamp = created_us // 1_000_000
            cookies = {"_ga": f"GA1.2.{rng.randrange(10 ** 9, 10 ** 10)}.{stamp}"}
            if rng.random() < 0.7:
                cookies["_ym_uid"] = f"{stamp}{rng.randrange(10 ** 8, 10 ** 9)}"
            answer["cookies"] = cookies
        elif roll < 0.6:
            answer["cookies"] = {}
        roll = rng.random()
        if roll < 0.7:
            meta: dict[str, Any] = {"referer": rng.choice(_REFERERS)}
            if rng.random() < 0.8:
                meta["user_agent"] = rng.choice(_USER_AGENTS)
            if rng.random() < 0.8:
                meta["ip"] = f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
            answer["meta"] = meta
        elif roll < 0.8:
            answer["meta"] = {}
        return answer

    def fill(self, dataset: Dataset, count: int) -> None:
        rng = self.rng
        start = datetime(2025, 9, 1, 9, 0, tzinfo=timezone(timedelta(hours=3)))
        poll_count = 1 if count < 10 else 3 if count < 10_000 else 5
        polls = self._polls(poll_count, start)
        for poll in polls:
            dataset.add_poll(poll)
        weights = [0.45, 0.3, 0.15, 0.06, 0.04][:poll_count]
        # Spread the answers over at most ~60 days; a third of them land in the same
        # second as the one before (ties), some in bursts of many per second.
        mean_gap = max(2.0, min(90.0, 60 * 86_400 / count))
        now_us = to_us(start)
        answer_id = 815_000_000 + rng.randrange(0, 1_000)
        burst = 0
        for _ in range(count):
            if burst:
                burst -= 1
            elif rng.random() < 0.35:
                burst = rng.choice((0, 0, 0, 1, 2, 5, 12)) if rng.random() < 0.3 else 0
            else:
                now_us += int(rng.expovariate(1 / mean_gap) * 1_000_000) // 1_000_000 * 1_000_000 + 1_000_000
            answer_id += rng.randrange(1, 4)
            poll = polls[rng.choices(range(poll_count), weights)[0]]
            created_us = updated_us = now_us
            if rng.random() < 0.05:  # edited later: same id, later updated_at
                updated_us = created_us + rng.randrange(1, 4 * 86_400) * 1_000_000
            offset = rng.choice(_OFFSETS)
            dataset.add_answer(self._answer(answer_id, poll, created_us, updated_us, offset), validate=False)
