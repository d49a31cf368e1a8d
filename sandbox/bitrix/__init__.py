"""Local emulator of a Bitrix24 portal's REST API (incoming webhook).

    from sandbox.bitrix import BitrixEmulator

    with BitrixEmulator(rate_limit=None) as portal:
        requests.post(portal.webhook_url + "crm.contact.add", json={"fields": {"NAME": "Ann"}})
        portal.admin.contacts()

See :mod:`sandbox.bitrix.server` for the request pipeline and the fault kinds.
"""
from .limits import LeakyBucket, OperatingLimiter
from .methods import REGISTRY, RestError
from .params import parse_str
from .server import FAULT_KINDS, AdminHandle, BitrixEmulator
from .tls import make_loopback_cert, server_context

__all__ = ["AdminHandle", "BitrixEmulator", "FAULT_KINDS", "LeakyBucket", "OperatingLimiter", "REGISTRY",
           "RestError", "make_loopback_cert", "parse_str", "server_context"]
