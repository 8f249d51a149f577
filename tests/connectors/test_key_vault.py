"""connectors/key_vault.py: keys persist, a destroyed key is gone from the file for good."""

from __future__ import annotations

import threading
from pathlib import Path

from connectors.key_vault import KeyVault


def file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_keys_survive_a_reopen_and_destruction_is_final(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with KeyVault(path) as vault:
        key = vault.key_for("acme", "inv-1")
        other = vault.key_for("acme", "inv-2")
    with KeyVault(path) as vault:
        assert vault.key_for("acme", "inv-1") == key and key != other
        assert vault.key_for("beta", "inv-1") != key  # per tenant
        vault.destroy("acme", "inv-1")
        assert vault.existing_key("acme", "inv-1") is None
    with KeyVault(path) as vault:
        assert vault.key_for("acme", "inv-1") is None  # never made again
        assert vault.key_for("acme", "inv-2") == other
    assert path.stat().st_mode & 0o777 == 0o600


def test_destroyed_key_bytes_and_investor_ids_are_not_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    vault = KeyVault(path)
    keys = {f"inv-{i}": vault.key_for("acme", f"inv-{i}") for i in range(50)}
    vault.destroy("acme", "inv-7")
    stored = file_bytes(path)  # the database and, while open, its write-ahead log
    assert keys["inv-7"] not in stored
    assert keys["inv-8"] in stored  # positive control: live keys are found this way
    assert b"inv-8" not in stored  # investors are stored under a keyed hash
    vault.close()
    assert keys["inv-7"] not in file_bytes(path)


def test_threads_and_a_second_process_handle_see_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    a, b = KeyVault(path), KeyVault(path)  # two handles: as two processes would
    seen: list[bytes | None] = []
    threads = [threading.Thread(target=lambda v=v: seen.append(v.key_for("acme", "inv-1")))
               for v in (a, b) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and None not in seen
    b.destroy("acme", "inv-1")
    assert a.existing_key("acme", "inv-1") is None and a.key_for("acme", "inv-1") is None
