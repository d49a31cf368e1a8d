"""The survey-platform emulator honours its OpenAPI contract (schemathesis).

Schemathesis generates requests for every operation of
``sandbox/survey-platform-openapi.yaml`` (valid and invalid ones) and checks each
response: no server error, a documented status code, a documented content type and
headers, a body that matches the documented schema. Every generated case is sent
twice: as generated (mostly unknown ids: the 404 paths) and with the ids replaced by
a real poll and answer (the 200 paths, with the generated query parameters).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox.survey import SurveyEmulator

OPENAPI = Path(__file__).resolve().parents[2] / "sandbox" / "survey-platform-openapi.yaml"
TOKEN = "contract-token"
REAL_IDS = {"poll_id": 430131691, "answer_id": 814573981}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]

schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def survey_emulator():
    with SurveyEmulator(token=TOKEN, answers=300, seed=1, rate_limit_per_s=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http:
        yield http


@schema.parametrize()
@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_survey_emulator_honours_the_openapi_contract(case, survey_emulator, session):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    case.call_and_validate(base_url=survey_emulator.base_url, session=session, headers=headers, checks=CHECKS)
    if case.path_parameters and all(isinstance(v, int) for v in case.path_parameters.values()):
        case.path_parameters = {name: REAL_IDS[name] for name in case.path_parameters}
        case.call_and_validate(base_url=survey_emulator.base_url, session=session, headers=headers, checks=CHECKS)
