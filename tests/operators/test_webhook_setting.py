"""The webhook is needed only by what talks to Bitrix24, and a malformed one is explained (issue 13, items 2, 10)."""
from __future__ import annotations

import pytest

from core.errors import ConfigError
from sync.app import Context
from sync.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL", "SURVEY_SOURCE"):
        monkeypatch.delenv(name, raising=False)


def test_settings_load_without_a_webhook_and_the_client_says_it_is_missing(tmp_path):
    settings = load_settings(survey_api_url="http://127.0.0.1:9", survey_api_token="t",
                             database_url=f"sqlite:///{tmp_path}/s.sqlite3")
    assert settings.bitrix24_webhook_url is None
    with pytest.raises(ConfigError, match=r"^BITRIX24_WEBHOOK_URL is not set \(") as caught:
        Context(settings).bitrix
    assert "→ set it in the environment or in .env" in str(caught.value)


def test_a_webhook_without_its_scheme_is_named_without_the_secret():
    with pytest.raises(ConfigError) as caught:
        load_settings(survey_api_url="http://127.0.0.1:9", survey_api_token="t",
                      bitrix24_webhook_url="portal.bitrix24.ru/rest/1/s3cr3tvalue/")
    text = str(caught.value)
    assert "BITRIX24_WEBHOOK_URL: has no https:// in front; it must look like https://<portal>.bitrix24.ru/rest/" in text
    assert "s3cr3tvalue" not in text and "'none'" not in text
