"""One settings object, read from the environment and ``.env`` at the entry point.

Nothing reads it at import time: ``load_settings()`` is called by ``cli.py`` and the
scheduler, and the object is passed down. A missing or malformed setting is a
``ConfigError`` that names it.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./data/sync.sqlite3"
DEFAULT_INTAKE_BASE_PATH = "/api/v1/integration"
# What the pull API needs; required only when SURVEY_SOURCE=api.
_API_ONLY = ("survey_api_url", "survey_api_token")
# The token is a path segment: keep it to characters that never need escaping in a URL.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any) -> Any:
    """``"10.0.0.0/8, 192.0.2.7"`` (or a list) → networks; a bare address is a /32 (/128)."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in items:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR network; write e.g. "
                             f"10.20.0.0/16,192.0.2.7") from None
    return networks


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    survey_source: Literal["api", "intake"] = Field(
        "api", description="Where answers come from: the survey platform's pull API, or the intake's inbox")
    # Required when survey_source is "api" (see _api_settings_when_pulling).
    survey_api_url: str | None = Field(None, description="Base URL of the survey platform's API, "
                                                         "e.g. https://surveys.example.edu/api/v1")
    survey_api_token: SecretStr | None = Field(None, description="Bearer token of the survey platform's API")
    # Optional here: only what talks to Bitrix24 needs it (``Context.bitrix_client`` says so); ``status`` does not.
    bitrix24_webhook_url: SecretStr | None = Field(
        None, description="Inbound webhook URL, https://portal/rest/<user>/<secret>/")
    database_url: str = DEFAULT_DATABASE_URL
    field_mapping: Path = Path("field_mapping.json")

    lookback_minutes: float = Field(10.0, ge=0, description="Re-read this far behind the watermark (replication lag)")
    batch_size: int = Field(50, ge=1, le=50)
    chunk_size: int = Field(2000, ge=50, description="Answers planned and pushed together")
    rate_limit_per_s: float = Field(2.0, gt=0)
    rate_limit_burst: int = Field(50, ge=1)
    push_concurrency: int = Field(3, ge=1, le=8, description="Independent batches in flight at once")
    http_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of the survey platform's API")
    # Longer than the portal's ~60 s cut-off (bitrix24-rest.md §10): a client that gives up
    # first turns a slow success into an unknown outcome that must be reconciled.
    bitrix24_timeout_s: float = Field(75.0, gt=0, description="HTTP timeout of Bitrix24 requests (> the 60 s cut-off)")
    operating_limit_s: float = Field(480.0, ge=0, description="Bitrix24 operating time per method per 10 minutes "
                                                               "(0: do not pace by it)")
    operating_margin: float = Field(0.98, gt=0, le=1, description="Share of OPERATING_LIMIT_S a method may use "
                                                                  "(with what is in flight) before its calls wait "
                                                                  "for the window to free")
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

    # The intake (cli.py intake): receives the university portal's pushes and only stores them.
    intake_host: str = "127.0.0.1"
    intake_port: int = Field(8000, ge=0, le=65535)
    intake_base_path: str = DEFAULT_INTAKE_BASE_PATH
    intake_max_body: int = Field(1024 * 1024, ge=1024, description="Largest packet accepted, in bytes")
    intake_token: SecretStr | None = Field(None, description="Secret path segment: <base>/<token>/postAnswer")
    intake_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDRs that may deliver; empty: anyone")
    intake_trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDRs whose X-Forwarded-For is believed")
    intake_check_employee: bool = False
    intake_check_timeout_s: float = Field(5.0, gt=0, le=60, description="Deadline of the employee check")

    @model_validator(mode="wrap")
    @classmethod
    def _api_settings_when_pulling(cls, data: Any, handler: Any) -> Any:
        # A wrap validator, so the "not set" errors are reported together with any other
        # field's (an "after" validator would not run when another field already failed).
        missing = []
        if isinstance(data, dict) and str(data.get("survey_source") or "api").strip().lower() == "api":
            missing = [name for name in _API_ONLY if data.get(name) in (None, "")]
        extra = [InitErrorDetails(type="missing", loc=(name,), input=data) for name in missing]
        try:
            model = handler(data)
        except ValidationError as exc:
            if not extra:
                raise
            raise ValidationError.from_exception_data(
                exc.title, [_details(e) for e in exc.errors() if tuple(e["loc"][:1]) not in
                            {(n,) for n in missing}] + extra) from None
        if extra:
            raise ValidationError.from_exception_data(cls.__name__, extra)
        return model

    @field_validator("survey_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value.rstrip("/")

    @field_validator("bitrix24_webhook_url", mode="before")
    @classmethod
    def _webhook_scheme(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        # The client's own check would say "got 'none' (got ?://?/***/…)" for a URL typed without its
        # scheme, since the host then reads as a path; say what is missing instead (never the URL: it holds the secret).
        if isinstance(text, str) and "://" not in text:
            raise ValueError("has no https:// in front; it must look like "
                             "https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be sqlite:///path or postgresql://user@host/db")
        return value

    @field_validator("intake_base_path")
    @classmethod
    def _base_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or any(c in value for c in "?#{} ") or "//" in value:
            raise ValueError("must be a URL path like /api/v1/integration (no query, no spaces, no braces)")
        return value.rstrip("/") or ""

    @field_validator("intake_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        text = str(text).strip()
        if len(text) < 16 or not _TOKEN_CHARS.fullmatch(text):
            # A short token is guessable; other characters would need URL-escaping in the portal's settings.
            raise ValueError("must be at least 16 characters of A-Z a-z 0-9 . _ ~ - "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        return text

    @field_validator("intake_allowed_networks", mode="before")
    @classmethod
    def _allowed(cls, value: Any) -> Any:
        return _networks(value)

    @field_validator("intake_trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> Any:
        return _networks(value)


def _details(error: Any) -> InitErrorDetails:
    """A reported error in the form ``ValidationError.from_exception_data`` takes back."""
    details = InitErrorDetails(type=error["type"], loc=tuple(error["loc"]), input=error.get("input"))
    if error.get("ctx") is not None:
        details["ctx"] = error["ctx"]
    return details


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
