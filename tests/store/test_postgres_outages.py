"""PostgreSQL that goes away: a server that stops answering fails a call within seconds
instead of hanging it, and a restarted one is used again from the next call."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from roomscribe.store import Store, StoreUnavailableError


@pytest.fixture
def database_url(postgres_server):
    url = postgres_server.create_database()
    yield url
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(url)


def test_a_stalled_server_fails_the_call_instead_of_hanging_it(database_url):
    from roomscribe.store.postgres import CUT_GRACE, PostgresDatabase

    store = Store(PostgresDatabase(database_url, statement_timeout=0.5))
    try:
        store.open_meeting("acme", "m1", source="page")
        with store._db.transaction() as cur:
            backend = cur.one("SELECT pg_backend_pid()")[0]
        os.kill(backend, signal.SIGSTOP)  # the server process stops: it cannot even cancel
        try:
            began = time.monotonic()
            with pytest.raises(StoreUnavailableError):
                store.get_meeting("acme", "m1")
            assert time.monotonic() - began < 0.5 + CUT_GRACE + 2.0
        finally:
            os.kill(backend, signal.SIGCONT)
        assert store.get_meeting("acme", "m1").id == "m1"  # on a new connection
    finally:
        store.close()


def test_a_restarted_server_is_used_again(postgres_server, database_url):
    from roomscribe.store import open_store

    store = open_store(database_url)
    try:
        store.open_meeting("acme", "m1", source="page")
        postgres_server.stop()
        with pytest.raises(StoreUnavailableError):
            store.get_meeting("acme", "m1")
        with pytest.raises(StoreUnavailableError):  # refused: nothing listens
            store.get_meeting("acme", "m1")
        postgres_server.start()
        assert store.get_meeting("acme", "m1").id == "m1"
    finally:
        store.close()


def test_after_a_restart_one_call_fails_not_one_per_pooled_connection(postgres_server, database_url):
    from roomscribe.store import open_store

    store = open_store(database_url)
    try:
        store.open_meeting("acme", "m1", source="page")
        barrier = threading.Barrier(4)

        def hold_a_connection() -> None:
            with store._db.transaction() as cur:
                barrier.wait()  # four transactions at once: four connections in the pool after
                cur.one("SELECT 1")

        threads = [threading.Thread(target=hold_a_connection) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store._db._idle) == 4

        postgres_server.stop()
        postgres_server.start()
        with pytest.raises(StoreUnavailableError):
            store.get_meeting("acme", "m1")  # on a connection the restart ended
        assert store.get_meeting("acme", "m1").id == "m1"
    finally:
        store.close()
