"""One settings object, read from the environment and ``.env`` at the entry point.

Nothing reads it at import time: ``load_settings()`` is called by ``cli.py`` and the
scheduler, and the object is passed down. A missing or malformed setting is a
``ConfigError`` that names it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./data/sync.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    survey_api_url: str = Field(description="Base URL of the survey platform's API, e.g. https://surveys.example.edu/api/v1")
    survey_api_token: SecretStr = Field(description="Bearer token of the survey platform's API")
    bitrix24_webhook_url: SecretStr = Field(description="Inbound webhook URL, https://portal/rest/<user>/<secret>/")
    database_url: str = DEFAULT_DATABASE_URL
    field_mapping: Path = Path("field_mapping.json")

    lookback_minutes: float = Field(10.0, ge=0, description="Re-read this far behind the watermark (replication lag)")
    batch_size: int = Field(50, ge=1, le=50)
    chunk_size: int = Field(2000, ge=50, description="Answers planned and pushed together")
    rate_limit_per_s: float = Field(2.0, gt=0)
    rate_limit_burst: int = Field(50, ge=1)
    push_concurrency: int = Field(3, ge=1, le=8, description="Independent batches in flight at once")
    http_timeout_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    source_name: str | None = Field(None, description="ORIGINATOR_ID of deals; overrides the mapping's source_name")
    schedule_every_s: int = Field(300, ge=10)
    schedule_cron: str | None = None
    report_language: Literal["ru", "en"] = "ru"
    report_dir: Path = Path("reports")
    metrics_file: Path | None = Field(None, description="Prometheus textfile written after every run")
    health_file: Path = Path("data/heartbeat.json")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("survey_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be sqlite:///path or postgresql://user@host/db")
        return value


_ENV_NAMES = {name: name.upper() for name in Settings.model_fields}


def load_settings(**overrides) -> Settings:
    """Build the settings from the environment, ``.env`` and ``overrides``; ConfigError names each bad one."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = _ENV_NAMES.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "?"
            if err["type"] == "missing":
                field = Settings.model_fields.get(str(err["loc"][0]))
                hint = f" ({field.description})" if field and field.description else ""
                lines.append(f"  {name} is not set{hint}")
            else:
                lines.append(f"  {name}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("configuration is incomplete or invalid:\n" + "\n".join(lines)
                          + "\nSet these in the environment or in .env in the working directory "
                            "(see README, 'Configuration').") from None
