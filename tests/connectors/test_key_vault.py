"""connectors/key_vault.py: keys persist, a destroyed key is gone from the file for good."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from esg_leads.connectors.key_vault import KeyVault


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


#: Opens the vault named by argv[1] (maybe while another process creates it) and
#: prints the keys of 200 investors, made or found, racing the other processes.
KEYS_OF_200 = """
import sys
from esg_leads.connectors.key_vault import KeyVault
vault = KeyVault(sys.argv[1])
print(",".join(vault.key_for("acme", f"inv-{i}").hex() for i in range(200)))
"""

KEY_OF_INV_7 = """
import sys
from esg_leads.connectors.key_vault import KeyVault
print(KeyVault(sys.argv[1]).key_for("acme", "inv-7"))
"""


def test_processes_sharing_one_new_file_agree_on_every_key(tmp_path: Path) -> None:
    """As ``replay --processes`` uses it: separate processes race to create the file
    and to make each investor's key; every one gets the same key, and a destruction by
    one is final for all."""
    path = tmp_path / "keys.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [subprocess.Popen([sys.executable, "-c", KEYS_OF_200, str(path)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    keys = outputs[0][0].strip().split(",")
    with KeyVault(path) as vault:
        assert vault.existing_key("acme", "inv-7").hex() == keys[7]
        vault.destroy("acme", "inv-7")
    done = subprocess.run([sys.executable, "-c", KEY_OF_INV_7, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "None", done.stderr


def test_the_earliest_erasure_position_is_kept_and_an_unknown_one_comes_first(
        tmp_path: Path) -> None:
    with KeyVault(tmp_path / "keys.sqlite") as vault:
        assert vault.erased_at("acme", "inv-1") is None
        vault.destroy("acme", "inv-1", at=(20, "investor.erasure", 0, 3))
        vault.destroy("acme", "inv-1", at=(30, "investor.erasure", 0, 9))  # a second request
        vault.destroy("acme", "inv-1", at=(10, "investor.erasure", 1, 0))  # read late, earlier
        assert vault.erased_at("acme", "inv-1") == (10, "investor.erasure", 1, 0)
        vault.destroy("acme", "inv-2")
        vault.destroy("acme", "inv-2", at=(5, "investor.erasure", 0, 0))
        assert vault.erased_at("acme", "inv-2") == ()  # before every position
    with KeyVault(tmp_path / "keys.sqlite") as vault:  # positions persist
        assert vault.erased_at("acme", "inv-1") == (10, "investor.erasure", 1, 0)


def test_a_store_written_before_erasures_had_positions_opens_and_keeps_its_erasures(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "keys.sqlite"
    with KeyVault(path) as vault:
        key = vault.key_for("acme", "inv-2")
        vault.destroy("acme", "inv-1")
    db = sqlite3.connect(path)  # as the store's schema was: no position column
    db.executescript("CREATE TABLE old AS SELECT subject FROM erased; DROP TABLE erased;"
                     "ALTER TABLE old RENAME TO erased;")
    db.close()
    with KeyVault(path) as vault:
        assert vault.erased_at("acme", "inv-1") == () and vault.key_for("acme", "inv-1") is None
        assert vault.key_for("acme", "inv-2") == key
        vault.destroy("acme", "inv-3", at=(1, "t", 0, 0))
        assert vault.erased_at("acme", "inv-3") == (1, "t", 0, 0)


def test_an_unreadable_erasure_position_counts_as_unknown_and_never_raises(
        tmp_path: Path) -> None:
    """A position column someone edited, or a disk flipped: the erasure stays an erasure,
    of unknown position (before everything: every later letter is withheld), and neither
    sealing nor a second erasure raises (it would stop the flow at every restart)."""
    import sqlite3

    path = tmp_path / "keys.sqlite"
    bad = [5, 2.5, b"\xff", "not json", '"x"', "[1]", "[1, 2, 3, 4]", '["a", "b", "c", "d"]',
           "{}", "[]", "null"]
    with KeyVault(path) as vault:
        for i in range(len(bad)):
            vault.destroy("acme", f"inv-{i}", at=(10, "investor.erasure", 0, i))
        subjects = [vault._subject("acme", f"inv-{i}") for i in range(len(bad))]
    db = sqlite3.connect(path)
    for subject, text in zip(subjects, bad, strict=True):
        db.execute("UPDATE erased SET at = ? WHERE subject = ?", (text, subject))
    db.commit()
    db.close()
    with KeyVault(path) as vault:
        for i in range(len(bad)):
            assert vault.erased_at("acme", f"inv-{i}") == (), bad[i]
            vault.destroy("acme", f"inv-{i}", at=(5, "investor.erasure", 0, i))
            assert vault.erased_at("acme", f"inv-{i}") == (), bad[i]
            assert vault.key_for("acme", f"inv-{i}") is None
