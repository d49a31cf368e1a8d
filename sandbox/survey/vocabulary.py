"""Words the answer generators draw from: names, mail domains, phones, UTM values.

Shared by the smart-process generator (``dataset.py``) and the real-portal one
(``dataset_real.py``), so both kinds of generated people look alike. Changing a list
changes every generated dataset: the seeds' bytes are part of tests and benchmarks.
"""
from __future__ import annotations

import functools
from typing import Callable

RU_MALE = ["Иван", "Алексей", "Дмитрий", "Сергей", "Андрей", "Михаил", "Никита", "Артём", "Павел", "Егор",
           "Илья", "Кирилл", "Максим", "Роман", "Фёдор", "Тимур", "Глеб", "Лев"]
RU_FEMALE = ["Анна", "Мария", "Елена", "Дарья", "Ольга", "Екатерина", "Софья", "Полина", "Алиса",
             "Виктория", "Ксения", "Юлия", "Наталья", "Татьяна", "Алёна", "Вера", "Ульяна"]
RU_LAST = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
           "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
           "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Захаров", "Зайцев", "Соловьёв"]
RU_PATRONYMIC = ["Иванов", "Сергеев", "Александров", "Дмитриев", "Андреев", "Петров", "Михайлов", "Олегов",
                 "Викторов", "Юрьев"]
EN_FIRST = ["James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sophia", "Wei",
            "Aisha", "Mateo", "Yuki", "Fatima", "Chloé", "Jürgen", "Priya"]
EN_LAST = ["Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Chen", "Kim",
           "Müller", "Rossi", "O'Brien", "Nguyen", "Silva", "Kowalski", "Haddad", "Lee-Wong"]
ODD_NAMES = [("Имя 🎓", "О'Коннор-Щукина"), ("Jean-Luc", "D'Artagnan"), ("Анна-Мария", "Римская-Корсакова"),
             ("  Пётр ", "Петров  "), ("ЁЖИК", "ёлкин")]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "example.com", "inbox.ru", "bk.ru", "outlook.com", "edu.example.org"]
BAD_EMAILS = ["not-an-email", "ivan@", "@mail.ru", "ivan petrov@mail.ru", "ivan@@mail.ru", "ivan@mail",
              "почта@", "test@example..com"]
# Programme names no CRM of ours holds (one is a near miss of a real list-18 name).
UNKNOWN_PROGRAMMES = ["Квантовая алхимия", "Астробиология", "Data Science (old)", "Прикладная магия",
                      "Юриспруденция цифровое право"]
UTM_SOURCES = ["yandex", "google", "vk", "telegram", "email", "partner", "hse.ru"]
UTM_MEDIUMS = ["cpc", "organic", "social", "newsletter", "banner", "referral"]
UTM_CAMPAIGNS = ["master-2026", "bachelor-2026", "open-day", "olymp"]
UTM_TERMS = ["юрист", "data science", "магистратура", "экономика"]
FOREIGN_PHONES = ["+44 20 7946 0958", "+1 (415) 555-0132", "+49 30 901820", "+375 29 123-45-67"]
BAD_PHONES = ["12345", "не помню", "+7 (916)"]
TEST_NETS = ["192.0.2", "198.51.100", "203.0.113"]  # RFC 5737: never a real visitor's address

_TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                     ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
                      "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"], strict=True))
_TRANSLIT_TABLE = str.maketrans({**_TRANSLIT, "'": "", " ": ""})


@functools.lru_cache(maxsize=None)
def translit(text: str) -> str:
    """A Latin mailbox name for a person's name; characters outside a-z 0-9 . - are dropped."""
    latin = text.lower().translate(_TRANSLIT_TABLE)
    return "".join(ch for ch in latin if ch.isascii() and (ch.isalnum() or ch in ".-"))


def random_phone(r: Callable[[], float]) -> str:
    """A phone as the public types it: Russian numbers in every format, some foreign, a few unusable.

    ``r`` is a seeded ``Random.random``; the draws are part of each generator's sequence.
    """
    d = f"9{int(r() * 100):02d}{int(r() * 10_000_000):07d}"
    fmt = int(r() * 9)
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
        return FOREIGN_PHONES[int(r() * len(FOREIGN_PHONES))]
    if fmt == 6 and r() < 0.2:
        return BAD_PHONES[int(r() * len(BAD_PHONES))]
    return f"+7{d}"
