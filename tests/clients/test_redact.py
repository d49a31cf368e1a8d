"""One redact() for everything: registered secrets and webhook path secrets become ***."""
from __future__ import annotations

import logging
import threading

from pydantic import SecretStr

from core.redact import MIN_SECRET_LENGTH, forget_secret, redact, redact_url, register_secret

SECRET = "q7w8e9r0t1y2u3i4"


def test_registered_secret_is_masked_everywhere() -> None:
    register_secret(SECRET)
    try:
        assert redact(f"token={SECRET}; again {SECRET}!") == "token=***; again ***!"
        assert SECRET not in redact(f"{{'headers': {{'Authorization': 'Bearer {SECRET}'}}}}")
    finally:
        forget_secret(SECRET)
    assert redact(SECRET) == SECRET  # forgotten


def test_url_encoded_forms_of_a_secret_are_masked() -> None:
    secret = "p@ss w/rd+42&x"
    register_secret(secret)
    try:
        assert redact("a p%40ss%20w%2Frd%2B42%26x b") == "a *** b"
        assert redact("a p%40ss+w%2Frd%2B42%26x b") == "a *** b"
    finally:
        forget_secret(secret)


def test_secretstr_is_accepted() -> None:
    register_secret(SecretStr("SecretStrValue123"))
    try:
        assert redact("x SecretStrValue123 y") == "x *** y"
    finally:
        forget_secret("SecretStrValue123")


def test_webhook_path_secret_masked_without_registration() -> None:
    url = "https://hse.bitrix24.ru/rest/17/nevERregistered42/crm.deal.add.json"
    assert redact(url) == "https://hse.bitrix24.ru/rest/17/***/crm.deal.add.json"
    assert redact("see https://x.ru/rest/1/abc") == "see https://x.ru/rest/1/***"
    assert redact("POST /rest/1/k2ix9lshu8v4x2zq/batch.json HTTP/1.1") == "POST /rest/1/***/batch.json HTTP/1.1"


def test_short_values_are_not_registered() -> None:
    """A test token like 'abc' would otherwise turn every 'abc' in every message into ***."""
    short = "x" * (MIN_SECRET_LENGTH - 1)
    register_secret(short)
    register_secret("")
    register_secret("   ")
    register_secret(None)
    assert redact(f"value {short}") == f"value {short}"


def test_redact_url_masks_password_and_credential_query_values() -> None:
    assert redact_url("postgresql://sync:hunter2hunter2@db:5432/sync") == "postgresql://sync:***@db:5432/sync"
    assert redact_url("https://p.ru/rest/crm.deal.list?auth=abcdef&start=50") == \
        "https://p.ru/rest/crm.deal.list?auth=***&start=50"
    assert redact_url("https://p.ru/rest/9/s3cr3tc0de/") == "https://p.ru/rest/9/***/"
    assert redact_url(SecretStr("https://p.ru/rest/9/s3cr3tc0de/")) == "https://p.ru/rest/9/***/"
    assert redact_url("not a url at all") == "not a url at all"


def test_redact_accepts_anything() -> None:
    assert redact(None) == ""
    assert redact(42) == "42"
    assert redact("") == ""


def test_registry_is_thread_safe() -> None:
    secrets = [f"threadsecret{i:04d}xyz" for i in range(40)]
    errors: list[str] = []

    def worker(i: int) -> None:
        register_secret(secrets[i])
        text = redact(f"<{secrets[i]}>")
        if text != "<***>":
            errors.append(text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert redact(" ".join(secrets)) == " ".join(["***"] * 40)
    finally:
        for s in secrets:
            forget_secret(s)


def test_logging_filter_redacts_urllib3_debug_lines(caplog) -> None:
    from core.redact import install_logging_filter

    install_logging_filter()
    install_logging_filter()  # idempotent
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug('%s://%s:%s "%s %s %s" %s', "https", "p.ru", 443,
                                                          "POST", "/rest/1/l0ggedsecret99/batch.json",
                                                          "HTTP/1.1", 200)
    assert "l0ggedsecret99" not in caplog.text
    assert "/rest/1/***/batch.json" in caplog.text
