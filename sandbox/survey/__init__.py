"""Local emulator of the survey platform's read API (``server.py``), its admin handle
(``admin.py``) and its data (``dataset.py``)."""
from sandbox.survey.admin import SurveyAdmin
from sandbox.survey.dataset import Dataset, PackedAnswer, build_dataset
from sandbox.survey.protocol import FAULT_KINDS
from sandbox.survey.server import SurveyEmulator

__all__ = ["FAULT_KINDS", "Dataset", "PackedAnswer", "SurveyAdmin", "SurveyEmulator", "build_dataset"]
