"""Timeline comments of CRM records: the store behind ``crm.timeline.comment.*``.

There is no external key on a comment (bitrix24-rest.md §10): a job that must add an
answer's comment exactly once puts a marker in the text and looks for it with
``crm.timeline.comment.list`` -- so the list must show everything added, in order.
The caller holds the CRM lock.
"""
from __future__ import annotations

from typing import Callable

ENTITY_TYPES = ("lead", "deal", "contact", "company", "order")


class TimelineStore:
    def __init__(self, *, now: Callable[[], float]) -> None:
        self.now = now
        self.comments: dict[int, dict] = {}
        # Comment ids per record, in the order added (ids only grow): a portal answers
        # "comments of deal 7" from an index, not by reading every comment it holds.
        self._by_owner: dict[tuple[str, int], dict[int, None]] = {}
        self.next_id = 1

    def add(self, entity_type: str, entity_id: int, comment: str, *, author: int) -> int:
        cid = self.next_id
        self.next_id += 1
        self.comments[cid] = {"ID": cid, "CREATED": self.now(), "ENTITY_ID": entity_id,
                              "ENTITY_TYPE": entity_type, "AUTHOR_ID": author, "COMMENT": comment}
        self._by_owner.setdefault((entity_type, entity_id), {})[cid] = None
        return cid

    def update(self, cid: int, comment: str) -> None:
        self.comments[cid]["COMMENT"] = comment

    def delete(self, cid: int) -> None:
        c = self.comments.pop(cid)
        self._by_owner[(c["ENTITY_TYPE"], c["ENTITY_ID"])].pop(cid, None)

    def of(self, entity_type: str | None = None, entity_id: int | None = None) -> list[dict]:
        """Comments of one record (or all), oldest first."""
        if entity_type is not None and entity_id is not None:
            return [self.comments[cid] for cid in self._by_owner.get((entity_type, entity_id), ())]
        return [c for _, c in sorted(self.comments.items())
                if (entity_type is None or c["ENTITY_TYPE"] == entity_type)
                and (entity_id is None or c["ENTITY_ID"] == entity_id)]
