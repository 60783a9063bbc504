"""API keys: the keys file holds hashes only, `corral keys add|ls|rm` manage it, CORRAL_API_KEYS entries, and
the key ring a server checks (constant-time comparison, reload on change, never switched off by a removal)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from corral import keys
from corral.errors import Conflict, CorralError, NotFound


def test_add_stores_only_the_hash_readable_by_the_owner(home):
    key, secret = keys.add_key("laptop", "inference", home)
    assert secret.startswith("corral-") and len(secret) > 40
    text = keys.keys_path(home).read_text()
    assert secret not in text
    assert f"laptop:inference:{keys.digest(secret)}" in text
    if os.name != "nt":
        assert stat.S_IMODE(os.stat(keys.keys_path(home)).st_mode) == 0o600
    assert [(k.name, k.scope) for k in keys.read_file(keys.keys_path(home))] == [("laptop", "inference")]
    with pytest.raises(Conflict):
        keys.add_key("laptop", "full", home)
    with pytest.raises(CorralError, match="key name"):
        keys.add_key("has space", "full", home)
    with pytest.raises(CorralError, match="scope"):
        keys.add_key("other", "admin", home)
    assert keys.remove_key("laptop", home).name == "laptop"
    with pytest.raises(NotFound):
        keys.remove_key("laptop", home)


def test_env_entries_and_broken_lines():
    found = keys.env_keys("ci:full:s3cret, bot:inference:abc:def")
    assert [(k.name, k.scope, k.source) for k in found] == [("ci", "full", "CORRAL_API_KEYS"),
                                                            ("bot", "inference", "CORRAL_API_KEYS")]
    assert found[1].digest == keys.digest("abc:def")  # a key may hold colons
    with pytest.raises(CorralError, match="CORRAL_API_KEYS: expected name:scope:key"):
        keys.env_keys("just-a-key")
    with pytest.raises(CorralError, match="scope"):
        keys.env_keys("ci:root:x")


def test_a_plaintext_line_in_the_file_is_refused_with_its_line(home):
    path = keys.keys_path(home)
    path.parent.mkdir(parents=True)
    path.write_text("# comment\nops:full:not-a-hash\n")
    with pytest.raises(CorralError, match=r"keys:2: .*sha256:HEX"):
        keys.read_file(path)


def test_key_ring_checks_every_key_and_picks_up_file_changes(home, monkeypatch):
    monkeypatch.setattr(keys.KeyRing, "RECHECK", 0.0)
    ring = keys.KeyRing.for_server(home, "main-key", environ={"CORRAL_API_KEYS": "bot:inference:bot-key"})
    assert ring.enabled
    assert ring.check("main-key").scope == "full" and ring.check("main-key").name == "default"
    assert ring.check(b"bot-key").name == "bot"
    assert ring.check("nope") is None and ring.check("") is None
    key, secret = keys.add_key("late", "inference", home)
    assert ring.check(secret).name == "late"  # added while the server runs
    assert "3 keys: 1 full, 2 inference" in ring.describe()


def test_removing_every_key_locks_instead_of_opening(home, monkeypatch):
    monkeypatch.setattr(keys.KeyRing, "RECHECK", 0.0)
    empty = keys.KeyRing.for_server(home, None, environ={})
    assert not empty.enabled and empty.describe() == "no API key"
    _, secret = keys.add_key("only", "full", home)
    assert empty.enabled and empty.check(secret).name == "only"  # keys turn on without a restart
    keys.remove_key("only", home)
    assert empty.enabled and empty.check(secret) is None  # and stay on


def test_keys_cli_add_ls_rm(run, home, monkeypatch):
    monkeypatch.delenv("CORRAL_API_KEY", raising=False)
    monkeypatch.setenv("CORRAL_API_KEYS", "ci:inference:x")
    added = run("keys", "add", "phone", "--scope", "inference", "--json")
    assert added.exit_code == 0, added.stderr
    data = json.loads(added.stdout)
    assert data["scope"] == "inference" and keys.digest(data["key"]) in keys.keys_path(home).read_text()
    plain = run("keys", "add", "desk")
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("corral-")
    assert "shown only now" in plain.stderr
    listed = json.loads(run("keys", "ls", "--json").stdout)
    assert listed == [{"name": "ci", "scope": "inference", "source": "CORRAL_API_KEYS"},
                      {"name": "phone", "scope": "inference", "source": "file"},
                      {"name": "desk", "scope": "full", "source": "file"}]
    table = run("keys", "ls").stdout
    assert table.splitlines()[0].split() == ["NAME", "SCOPE", "SOURCE"] and data["key"] not in table
    again = run("keys", "add", "desk")
    assert again.exit_code == 3 and "exists" in again.stderr
    assert run("keys", "rm", "phone").stdout.strip() == "Removed key 'phone'."
    missing = run("keys", "rm", "phone")
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
