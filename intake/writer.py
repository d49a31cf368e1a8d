"""Group commit: one writer thread stores what queued up meanwhile in one transaction.

Every delivery waits for its packet to be on disk before it is acknowledged, and on
SQLite with ``synchronous=FULL`` (or Postgres) a commit waits for the disk — a few
milliseconds here. One commit per packet would cap the intake at a few hundred
packets a second however fast everything else is; one commit per *group* costs the
same wait for all the packets that arrived during the previous one. Each packet still
has its own savepoint, so a packet that fails is rolled back alone.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from typing import Any

from loguru import logger

from storage.inbox import InboxStore

MAX_GROUP = 100  # bounds one transaction's length, and so a waiting reader's


class GroupWriter:
    """Queue writes for the one writer thread; ``await writer.write("store_answer", **kwargs)``."""

    def __init__(self, store: InboxStore, *, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.max_group = max_group
        self._queue: queue.Queue[tuple[str, dict[str, Any], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._thread.start()

    async def write(self, op: str, **kwargs: Any) -> Any:
        """The op's result once it is committed; its exception (or the commit's ``StoreError``) otherwise."""
        future: Future = Future()
        self._queue.put((op, kwargs, future))
        return await asyncio.wrap_future(future)

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[tuple[str, dict[str, Any], Future]]) -> None:
        try:
            results = self.store.write_group([(op, kwargs) for op, kwargs, _ in group])
        except BaseException as exc:  # noqa: BLE001 - the commit failed: nothing of this group is stored
            for _, _, future in group:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            logger.debug("intake writer: a group of {} failed: {}", len(group), exc)
            return
        for (_, _, future), result in zip(group, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
