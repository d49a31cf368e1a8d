"""The sandbox: local emulators of the survey platform and a Bitrix24 portal.

``Sandbox`` starts both in-process (tests, ``cli.py demo``, benchmarks); ``cli.py
sandbox`` serves them until Ctrl-C. ``env()`` gives the settings that point the job
at them.

Two portals, each with the survey data in its own vocabulary: ``"real"`` (the office's
portal, universal lists 17/18, answers with the codes of real-portal.md) and ``"smart"``
(the smart-process portal of ``sandbox/portal.json``, answers with the codes the project
was first built for).
"""
from __future__ import annotations

from typing import Any

from sandbox.faults import FaultInjector

# What the job's webhook is on each portal: the real one's integration user (169) needs
# the "lists" scope for the poll forms and programmes; the smart portal has no lists.
PORTALS: dict[str, dict[str, Any]] = {
    "real": {"user_id": 169, "scopes": ("crm", "user", "lists")},
    "smart": {"user_id": 1, "scopes": ("crm", "user")},
}

# Seeded fault rates per profile: "flaky" is a bad day, "chaos" everything at once.
FAULT_PROFILES: dict[str, dict[str, dict[str, float]]] = {
    "none": {"survey": {}, "bitrix": {}},
    "flaky": {
        "survey": {"http_503": 0.03, "drop": 0.02, "http_429": 0.02},
        "bitrix": {"http_503": 0.03, "http_500": 0.02, "drop_after": 0.02, "batch_command_error": 0.02},
    },
    "chaos": {
        "survey": {"http_502": 0.05, "http_503": 0.05, "http_504": 0.03, "drop": 0.04, "http_429": 0.05,
                   "slow": 0.02, "cursor_expired": 0.03},
        "bitrix": {"http_503": 0.05, "http_500": 0.04, "html_502": 0.03, "html_504": 0.02, "drop_before": 0.04,
                   "drop_after": 0.05, "slow": 0.02, "batch_command_error": 0.05},
    },
}


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


# Not passed by the caller: the Bitrix24 plan profile decides (None already means "off").
_NOT_GIVEN: Any = _NotGiven()


class Sandbox:
    """Both emulators, started together; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", survey_port: int = 0, bitrix_port: int = 0, answers: int = 0,
                 seed: int = 0, faults: str = "none", portal: str = "real", bitrix_profile: str = "standard",
                 rate_limit: float | None = _NOT_GIVEN, burst: int = _NOT_GIVEN,
                 latency_ms: float = 0.0, command_latency_ms: float = 0.0, survey_rate_limit: float | None = None,
                 include_samples: bool = True, bitrix_kwargs: dict | None = None, **survey_kwargs) -> None:
        """``portal``: ``"real"`` or ``"smart"`` -- the Bitrix24 portal served and the
        vocabulary of the survey data (samples of that portal plus ``answers`` generated).
        ``bitrix_profile``: the plan's throttles (``"standard"`` 2/s, bucket 50;
        ``"enterprise"`` 5/s, 250); ``rate_limit``/``burst`` override it only when given
        (``rate_limit=None`` turns the bucket off). ``bitrix_kwargs`` go to the emulator last.
        """
        from sandbox.bitrix.server import FROM_PROFILE, BitrixEmulator
        from sandbox.bitrix.state import load_portal
        from sandbox.survey import SurveyEmulator
        from sandbox.survey.dataset import build_dataset
        from sandbox.survey.dataset_real import build_real_dataset

        if faults not in FAULT_PROFILES:
            raise ValueError(f"unknown fault profile {faults!r}; one of {sorted(FAULT_PROFILES)}")
        if portal not in PORTALS:
            raise ValueError(f"unknown portal {portal!r}; one of {sorted(PORTALS)}")
        self.portal = portal
        profile = FAULT_PROFILES[faults]
        build = build_real_dataset if portal == "real" else build_dataset
        dataset = build(answers=answers, seed=seed, include_samples=include_samples)
        self.survey = SurveyEmulator(host=host, port=survey_port, dataset=dataset, seed=seed,
                                     faults=FaultInjector(seed=seed, rates=profile["survey"]), latency_ms=latency_ms,
                                     rate_limit_per_s=survey_rate_limit, **survey_kwargs)
        limits = {"rate_limit": FROM_PROFILE if rate_limit is _NOT_GIVEN else rate_limit,
                  "burst": FROM_PROFILE if burst is _NOT_GIVEN else burst}
        self.bitrix = BitrixEmulator(**{"host": host, "port": bitrix_port, "portal": load_portal(portal),
                                        **PORTALS[portal], "profile": bitrix_profile, **limits,
                                        "faults": FaultInjector(seed=seed + 1, rates=profile["bitrix"]),
                                        "latency_ms": latency_ms, "command_latency_ms": command_latency_ms,
                                        **(bitrix_kwargs or {})})

    def start(self) -> "Sandbox":
        self.survey.start()
        try:
            self.bitrix.start()
        except BaseException:
            self.survey.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.bitrix.stop()
        finally:
            self.survey.stop()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The settings that point the sync job at this sandbox."""
        return {"SURVEY_API_URL": self.survey.base_url, "SURVEY_API_TOKEN": self.survey.token,
                "BITRIX24_WEBHOOK_URL": self.bitrix.webhook_url}

    def settings_kwargs(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.env().items()}
