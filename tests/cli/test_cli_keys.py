"""`roomscribe keys create|list|revoke`: a key printed once as the last word, stored hashed,
listed without its secret, revoked; the same store `serve` reads (`--data-dir`, `--database`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from roomscribe.store import open_store
from roomscribe.web.config import ServerConfig
from support.serving import running_server


def keys(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "roomscribe.cli", "keys", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_option(request, tmp_path) -> list[str]:
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "records")]
    pytest.importorskip("psycopg")
    return ["--database", request.getfixturevalue("postgres_server").create_database()]


def test_keys_are_created_once_listed_without_secrets_and_revoked(store_option):
    created = keys("create", "acme", "--label", "meeting app", *store_option)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split()[-1]
    assert secret.startswith("rs_") and len(secret) > 30
    other = keys("create", "globex", *store_option).stdout.split()[-1]

    listing = keys("list", *store_option)
    assert listing.returncode == 0
    assert secret not in listing.stdout and other not in listing.stdout  # secrets are never shown again
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and any("acme" in line and "meeting app" in line and "active" in line for line in lines)
    assert keys("list", "globex", *store_option).stdout.count("\n") == 1

    database = store_option[1] if store_option[0] == "--database" else None
    data_dir = store_option[1] if store_option[0] == "--data-dir" else None
    with open_store(database, data_dir) as store:
        assert store.tenant_for_key(secret) == "acme" and store.tenant_for_key(other) == "globex"
        key_id = next(k.id for k in store.list_keys("acme"))

    revoked = keys("revoke", key_id, *store_option)
    assert revoked.returncode == 0 and key_id in revoked.stdout
    assert "revoked" in keys("list", "acme", *store_option).stdout
    with open_store(database, data_dir) as store:
        assert store.tenant_for_key(secret) is None and store.tenant_for_key(other) == "globex"
    again = keys("revoke", key_id, *store_option)
    assert again.returncode == 2 and "no active key" in again.stderr


def test_bad_tenant_names_and_unknown_databases_are_clear_errors(tmp_path):
    bad = keys("create", "../etc", "--data-dir", tmp_path)
    assert bad.returncode == 2 and "tenant" in bad.stderr and "Traceback" not in bad.stderr
    nowhere = keys("list", "--database", "mysql://x/y")
    assert nowhere.returncode == 2 and "postgresql://" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_a_key_made_by_the_command_opens_the_server_on_the_same_store(engine, tmp_path):
    data_dir = tmp_path / "records"
    secret = keys("create", "acme", "--data-dir", data_dir).stdout.split()[-1]
    with running_server(engine, ServerConfig(port=0, data_dir=str(data_dir))) as server:

        def meetings(key: str | None) -> int | dict:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            request = urllib.request.Request(server.url + "/meetings", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code

        assert meetings(None) == 401  # a key exists: loopback needs one too
        assert meetings("rs_wrong") == 401
        assert meetings(secret)["tenant"] == "acme"
        with urllib.request.urlopen(server.url + "/health", timeout=30) as response:
            assert response.status == 200  # public
