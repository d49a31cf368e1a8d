"""The intake as it runs: `cli.py intake` under uvicorn on a free port, real HTTP."""
from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from intake.server import make_intake_engine
from storage.inbox import InboxStore, inbox_stats
from sync.source.inbox import InboxSource
from tests.intake.conftest import IntakeProcess, sample_answers, sample_polls


def answer(answer_id: int, poll_id: int = 430131691) -> dict:
    body = {**sample_answers()[0]}
    body["header_data"] = {**body["header_data"], "answer_id": answer_id, "poll_id": poll_id}
    return body


def test_samples_over_real_http_land_in_the_inbox(store_url):
    server = IntakeProcess(store_url)
    try:
        assert server.line == f"intake listening on {server.url}\n" and server.url.endswith("/api/v1/integration")
        server.wait_healthy()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for poll in sample_polls():
                assert client.post("/postPoll", json=poll).json()["is_successful"] is True
            for body in sample_answers():
                assert client.post("/postAnswer", json=body).json()["is_successful"] is True
            docs = httpx.get(server.url.split("/api/")[0] + "/docs", timeout=5)
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        assert server.proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        server.stop()
    engine = make_intake_engine(store_url)
    try:
        source = InboxSource(engine)
        got = {a.answer_id: a for pid in source.answer_poll_ids() for page in source.iter_answers(pid) for a in page.items}
        assert sorted(got) == list(range(814573981, 814573992))
        assert got[814573982].cookies == {"_ga": "GA1.2.1.2", "roistat_visit": "9000001"}
        assert got[814573982].value_of("email") == "IVAN.PETROV@example.com"
        assert sorted(p.poll_id for page in source.iter_polls(None) for p in page.items) == [
            430131691, 512004417, 607711203]
    finally:
        engine.dispose()


def test_fifty_concurrent_deliveries_are_all_stored_exactly_once(store_url):
    server = IntakeProcess(store_url)
    try:
        server.wait_healthy()
        ids = list(range(900000001, 900000051))
        with httpx.Client(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=60)) as client:
            barrier = threading.Barrier(50)

            def deliver(answer_id: int):
                barrier.wait()
                # Half of them delivered twice at once: the second is a repeat, not a second version.
                body = answer(answer_id)
                replies = [client.post("/postAnswer", json=body)]
                return replies

            with ThreadPoolExecutor(50) as pool:
                results = list(pool.map(deliver, ids))
            with ThreadPoolExecutor(50) as pool:  # the same 50 again, all at once
                again = list(pool.map(lambda i: client.post("/postAnswer", json=answer(i)), ids))
        assert all(r[0].status_code == 200 and r[0].json()["is_successful"] for r in results)
        assert all(r.json()["message"] == "Ответ уже был получен" for r in again)
    finally:
        server.stop()
    engine = make_intake_engine(store_url)
    try:
        store = InboxStore(engine)
        assert all(len(store.answer_versions(answer_id=i)) == 1 for i in ids)
        stats = inbox_stats(engine)
        assert stats["answers"] == 50 and stats["answer_versions"] == 50 and stats["redeliveries"] == 50
        stamps = [a.updated_at for page in InboxSource(engine).iter_answers(430131691) for a in page.items]
        assert len(stamps) == 50 and stamps == sorted(stamps)
    finally:
        engine.dispose()


def test_sigterm_lets_deliveries_in_flight_finish_and_exits_0(sqlite_url):
    server = IntakeProcess(sqlite_url)
    acknowledged: list[int] = []
    try:
        server.wait_healthy()
        stop = threading.Event()

        def deliver_until_refused(start: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for answer_id in range(start, start + 100_000):
                    if stop.is_set():
                        return
                    try:
                        reply = client.post("/postAnswer", json=answer(answer_id))
                    except httpx.HTTPError:
                        return  # the server closed: no more acknowledgements
                    if reply.status_code == 200 and reply.json()["is_successful"]:
                        acknowledged.append(answer_id)

        threads = [threading.Thread(target=deliver_until_refused, args=(s,)) for s in (1_000_000, 2_000_000)]
        for t in threads:
            t.start()
        while len(acknowledged) < 40:
            threading.Event().wait(0.01)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        server.stop()
    engine = make_intake_engine(sqlite_url)
    try:
        store = InboxStore(engine)
        assert all(store.answer_versions(answer_id=i) for i in acknowledged)
    finally:
        engine.dispose()


def test_sigkill_in_the_middle_of_deliveries_loses_no_acknowledged_packet(store_url):
    server = IntakeProcess(store_url)
    acknowledged: list[int] = []
    lock = threading.Lock()
    try:
        server.wait_healthy()

        def deliver(start: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for answer_id in range(start, start + 100_000):
                    try:
                        reply = client.post("/postAnswer", json=answer(answer_id))
                    except httpx.HTTPError:
                        return
                    if reply.status_code == 200 and reply.json()["is_successful"]:
                        with lock:
                            acknowledged.append(answer_id)

        threads = [threading.Thread(target=deliver, args=(s,)) for s in (1_000_000, 2_000_000, 3_000_000, 4_000_000)]
        for t in threads:
            t.start()
        while len(acknowledged) < 100:
            threading.Event().wait(0.005)
        server.proc.kill()  # SIGKILL: no shutdown code runs at all
        server.proc.wait(10)
        for t in threads:
            t.join(20)
    finally:
        server.stop()
    engine = make_intake_engine(store_url)
    try:
        store = InboxStore(engine)
        missing = [i for i in acknowledged if not store.answer_versions(answer_id=i)]
        assert missing == [] and len(acknowledged) >= 100
    finally:
        engine.dispose()
