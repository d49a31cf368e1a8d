"""The sandbox: local emulators of the survey platform and a Bitrix24 portal.

``Sandbox`` starts both in-process (tests, ``cli.py demo``, benchmarks); ``cli.py
sandbox`` serves them until Ctrl-C. ``env()`` gives the settings that point the job
at them.
"""
from __future__ import annotations

from sandbox.faults import FaultInjector

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


class Sandbox:
    """Both emulators, started together; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", survey_port: int = 0, bitrix_port: int = 0, answers: int = 0,
                 seed: int = 0, faults: str = "none", rate_limit: float | None = 2.0, burst: int = 50,
                 latency_ms: float = 0.0, command_latency_ms: float = 0.0, survey_rate_limit: float | None = None,
                 include_samples: bool = True, bitrix_kwargs: dict | None = None, **survey_kwargs) -> None:
        from sandbox.bitrix.server import BitrixEmulator
        from sandbox.survey import SurveyEmulator
        from sandbox.survey.dataset import build_dataset

        if faults not in FAULT_PROFILES:
            raise ValueError(f"unknown fault profile {faults!r}; one of {sorted(FAULT_PROFILES)}")
        profile = FAULT_PROFILES[faults]
        dataset = build_dataset(answers=answers, seed=seed, include_samples=include_samples)
        self.survey = SurveyEmulator(host=host, port=survey_port, dataset=dataset, seed=seed,
                                     faults=FaultInjector(seed=seed, rates=profile["survey"]), latency_ms=latency_ms,
                                     rate_limit_per_s=survey_rate_limit, **survey_kwargs)
        self.bitrix = BitrixEmulator(host=host, port=bitrix_port, rate_limit=rate_limit, burst=burst,
                                     faults=FaultInjector(seed=seed + 1, rates=profile["bitrix"]),
                                     latency_ms=latency_ms, command_latency_ms=command_latency_ms,
                                     **(bitrix_kwargs or {}))

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
