"""The ledger: every answer and poll the job has seen, and how far each got.

Rows move ``pending → in_flight → pushed | failed | needs_attention``; an edit of a
pushed answer makes it ``changed`` (pushable again). Staging moves the named
watermark in the same transaction as the rows, and only forward, so a crash after
staging loses nothing and a crash before it re-reads the same window.

Every method is keyword-only (apart from obvious single arguments), runs one short
transaction and returns plain values (pydantic models, detached SQLModel rows),
never an open session. Database failures surface as ``StoreError``.

Status rules for ``stage_answers`` (by ``answer_id``; the hash is ``content_hash``
of the whole dict the caller passed). Content with a new hash makes:

- an unknown id → ``pending``;
- a ``pushed`` row → ``changed``;
- a ``pending``, ``changed``, ``failed`` or ``needs_attention`` row → ``pending`` if
  it never reached the CRM (no contact, no deals), else ``changed``; its problems
  and error are cleared;
- an ``in_flight`` row → still ``in_flight`` (its push must be reconciled first),
  with the new payload and hash; ``mark_pushed`` then finds the hash differs from
  what was pushed and makes it ``changed``.

The same hash again leaves the row untouched, whatever its status.

The package is split by job: ``answers`` (stage / select / mark), ``polls``,
``watermarks``, ``runs``, with the value types and input checks in ``values`` and
the engine and transaction helpers in ``base``.
"""
from __future__ import annotations

from storage.ledger.answers import AnswerLedger
from storage.ledger.polls import PollLedger
from storage.ledger.runs import RunLedger
from storage.ledger.values import PushedResult, StageCounts, content_hash
from storage.ledger.watermarks import WatermarkLedger

__all__ = ["Ledger", "PushedResult", "StageCounts", "content_hash"]


class Ledger(AnswerLedger, PollLedger, WatermarkLedger, RunLedger):
    """The store's API over an Engine (see the module docstring for the status rules)."""
