"""Opening a store: where SQLite lives, which URLs are understood, what a missing driver or an
unreachable server says, and migrations: a database keeps its records across openings, two
openers at once migrate it once, and a newer schema is refused."""

from __future__ import annotations

import os
import stat
import sys
import threading

import pytest

from roomscribe.store import Segment, StoreError, open_store
from roomscribe.store.migrations import LATEST


def test_sqlite_lives_in_a_private_data_directory(tmp_path):
    data_dir = tmp_path / "data" / "roomscribe"
    store = open_store(data_dir=data_dir)
    try:
        assert store.kind == "sqlite"
        assert store.status() == {
            "kind": "sqlite",
            "url": f"sqlite://{data_dir / 'roomscribe.db'}",
            "schema_version": LATEST,
        }
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(data_dir / "roomscribe.db").st_mode) == 0o600
    finally:
        store.close()


def test_default_data_dir_is_the_users():
    from roomscribe.store import default_data_dir

    assert default_data_dir().name == "roomscribe"


@pytest.mark.parametrize(
    "database, message",
    [
        ("mysql://u:hunter2@db/x", "unsupported database"),
        ("roomscribe.db", "unsupported database"),
        ("sqlite://relative.db", "absolute path"),
    ],
)
def test_unknown_databases_are_refused_without_showing_a_password(database, message):
    with pytest.raises(StoreError, match=message) as caught:
        open_store(database)
    assert "hunter2" not in str(caught.value)


def test_postgresql_without_psycopg_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "roomscribe.store.postgres", raising=False)
    with pytest.raises(StoreError, match=r"pip install 'roomscribe\[postgres\]'"):
        open_store("postgres://u@localhost/x")


def test_an_unreachable_postgresql_fails_at_open():
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot open the PostgreSQL store") as caught:
        open_store("postgresql://who:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(caught.value)


def test_reopening_keeps_the_records(store_database):
    first = open_store(store_database)
    key, secret = first.create_key("acme")
    first.open_meeting("acme", "m1", source="page")
    first.save_segments("acme", "m1", [Segment("s1", "ann", 0.0, 1.0, "kept")])
    first.close()

    again = open_store(store_database)
    try:
        assert again.status()["schema_version"] == LATEST
        assert again.tenant_for_key(secret) == "acme"
        assert [s.text for s in again.segments("acme", "m1")] == ["kept"]
    finally:
        again.close()


def test_openers_at_once_migrate_once(store_database):
    barrier, stores, errors = threading.Barrier(4), [], []

    def open_it() -> None:
        try:
            barrier.wait()
            stores.append(open_store(store_database))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with stores[0]._db.transaction() as cur:
            assert cur.all("SELECT version FROM schema_version") == [(LATEST,)]
    finally:
        for s in stores:
            s.close()


def test_a_newer_schema_is_refused(store_database):
    store = open_store(store_database)
    with store._db.transaction(write=True) as cur:
        cur.execute("INSERT INTO schema_version (version, summary, applied_at) VALUES (?, ?, ?)", (LATEST + 1, "", 0))
    store.close()
    with pytest.raises(StoreError, match="upgrade roomscribe"):
        open_store(store_database)


def test_the_status_url_has_no_password(postgres_server):
    url = postgres_server.create_database()
    # The test server trusts local connections, so any password opens it.
    with open_store(url.replace("postgres@", "postgres:hunter2@")) as store:
        status = store.status()
    assert status["kind"] == "postgresql" and status["schema_version"] == LATEST
    assert "hunter2" not in status["url"] and status["url"].startswith("postgresql://postgres@")
    postgres_server.drop_database(url)


def test_a_new_migration_is_applied_once_and_keeps_the_records(store_database):
    from roomscribe.store.migrations import MIGRATIONS, Migration, migrate

    store = open_store(store_database)
    try:
        store.open_meeting("acme", "m1", source="page", title="kept")
        note = Migration(LATEST + 1, "a note on meetings", ("ALTER TABLE meetings ADD COLUMN note TEXT",))
        newer = (*MIGRATIONS, note)
        assert migrate(store._db, newer) == LATEST + 1
        assert migrate(store._db, newer) == LATEST + 1  # applied already: nothing to do
        with store._db.transaction() as cur:
            assert [v for (v,) in cur.all("SELECT version FROM schema_version ORDER BY version")] == [
                *range(1, LATEST + 2)
            ]
            assert cur.one("SELECT note FROM meetings WHERE id = 'm1'") == (None,)
        assert store.get_meeting("acme", "m1").title == "kept"
    finally:
        store.close()


def test_sqlite_in_memory():
    with open_store("sqlite:///:memory:") as store:
        store.open_meeting("acme", "m1", source="page")
        assert store.count_meetings("acme") == 1 and store.status()["url"] == "sqlite:///:memory:"
