"""The model registry on disk: immutable, content-addressed artifacts and an index.

Layout of ``registry.directory``::

    models/m-<12 hex>.json   one model version (schemas/model_artifact.py), never rewritten
    index.jsonl              one line per version: its card's headline numbers

A version's name is the first 12 hex digits of the SHA-256 of its artifact's bytes,
and the index keeps the whole digest: loading re-hashes the file, so a truncated,
corrupted or substituted artifact is refused with a one-line :class:`RegistryError`
instead of becoming a silently different model. Training the same recording twice
gives the same bytes, hence the same version (registration is idempotent).

Every write is a temporary file, ``fsync``, then ``rename`` (atomic on POSIX), and
index updates hold an exclusive lock, so neither a crash nor two concurrent
``esg-leads train`` runs leave a half-written file or lose a line. An artifact
written just before a crash, whose index line never made it, is indexed again
when the same model is registered again, and loads by its version regardless.

>>> import tempfile
>>> store = ModelStore(tempfile.mkdtemp())
>>> store.entries()
[]
>>> store.load("m-0123456789ab")
Traceback (most recent call last):
...
esg_leads.online_models.model_store.RegistryError: no model version m-0123456789ab in ...
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
from pydantic import ValidationError

from esg_leads.schemas.model_artifact import ModelArtifact
from esg_leads.schemas.settings import Settings

INDEX = "index.jsonl"
MODELS = "models"
_VERSION = re.compile(r"m-[0-9a-f]{4,12}")
DIGITS = 12


class RegistryError(Exception):
    """A registry problem an operator must fix (missing version, corrupt file, wrong
    feature set); its message is one line, fit for the terminal and the logs."""


def registry_directory(settings: Settings) -> Path:
    """``registry.directory``; by default ``registry`` under the recovery directory (a
    run's durable state lives there), else ``model-registry`` in the working directory."""
    if settings.registry.directory is not None:
        return Path(settings.registry.directory)
    if settings.recovery.directory is not None:
        return Path(settings.recovery.directory) / "registry"
    return Path("model-registry")


def encode(artifact: ModelArtifact) -> bytes:
    """The artifact's canonical bytes (sorted keys: equal models, equal bytes)."""
    return orjson.dumps(artifact.model_dump(mode="json"),
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:  # the rename itself survives a crash only once the directory is synced
        os.fsync(directory)
    finally:
        os.close(directory)


class ModelStore:
    """The registry in ``directory`` (created on first registration)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    # ------------------------------------------------------------------ write

    def register(self, artifact: ModelArtifact, created_at: datetime) -> str:
        """Store ``artifact`` (if new) and index it; returns its version."""
        data = encode(artifact)
        digest = hashlib.sha256(data).hexdigest()
        version = f"m-{digest[:DIGITS]}"
        path = self._path(version)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not (path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest):
                    _write_atomic(path, data)  # new, or repairing a damaged copy of itself
                entries = self.entries()
                if any(e["version"] == version for e in entries):
                    return version
                card = artifact.card
                entries.append({
                    "version": version, "sha256": digest, "tenant": card.tenant,
                    "feature_set_version": card.feature_set_version,
                    "created_at": created_at.isoformat(), "created_by": card.created_by,
                    "parent": card.parent, "labels": card.labels, "positives": card.positives,
                    "window_start": card.window_start.isoformat() if card.window_start else None,
                    "window_end": card.window_end.isoformat() if card.window_end else None,
                    "log_loss": card.validation.get("log_loss"),
                    "auc": card.validation.get("auc"),
                })
                _write_atomic(self.directory / INDEX,
                              b"".join(orjson.dumps(e) + b"\n" for e in entries))
        except OSError as error:
            raise RegistryError(f"cannot write to the registry {self.directory}: "
                                f"{error.strerror or error}") from None
        return version

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------- read

    def entries(self) -> list[dict]:
        """The index, oldest first (empty for a registry not yet written)."""
        path = self.directory / INDEX
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise RegistryError(f"cannot read {path}: {error.strerror or error}") from None
        out = []
        for number, line in enumerate(lines, 1):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), str) \
                    or not isinstance(entry.get("sha256"), str):
                raise RegistryError(f"{path}:{number}: not an index line (damaged index)")
            out.append(entry)
        return out

    def resolve(self, version: str) -> str:
        """The full version named by ``version`` or an unambiguous prefix of it."""
        if not _VERSION.fullmatch(version):
            raise RegistryError(f"{version!r} is not a model version (m- and 4 to 12 hex digits)")
        if len(version) == 2 + DIGITS:
            return version
        matches = sorted({e["version"] for e in self.entries() if e["version"].startswith(version)})
        if len(matches) > 1:
            raise RegistryError(f"{version} is ambiguous: {', '.join(matches)}")
        if not matches:
            raise RegistryError(f"no model version {version} in {self.directory}")
        return matches[0]

    def entry(self, version: str) -> dict | None:
        return next((e for e in self.entries() if e["version"] == version), None)

    def load(self, version: str, feature_set_version: str | None = None) -> ModelArtifact:
        """The artifact of ``version``, verified; with ``feature_set_version``, refused
        unless it was trained on that feature set."""
        version = self.resolve(version)
        path = self._path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"no model version {version} in {self.directory}") from None
        except OSError as error:
            raise RegistryError(f"cannot read {path}: {error.strerror or error}") from None
        digest = hashlib.sha256(data).hexdigest()
        entry = self.entry(version)
        expected = entry["sha256"] if entry is not None else None
        if not digest.startswith(version[2:]) or (expected is not None and digest != expected):
            raise RegistryError(f"model {version} is corrupt: {path} does not match its "
                                "checksum (truncated or modified); restore it or retrain")
        try:
            artifact = ModelArtifact.model_validate_json(data)
        except ValidationError as error:
            # Only reachable with a consistent checksum: written by another build, or forged.
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            raise RegistryError(f"model {version} is not a readable artifact "
                                f"({where}: {first['msg']})") from None
        if feature_set_version is not None \
                and artifact.card.feature_set_version != feature_set_version:
            raise RegistryError(
                f"model {version} was trained on feature set "
                f"{artifact.card.feature_set_version}, this build computes "
                f"{feature_set_version}: retrain it (esg-leads train) instead of loading it")
        return artifact

    def _path(self, version: str) -> Path:
        return self.directory / MODELS / f"{version}.json"


__all__ = ["ModelStore", "RegistryError", "encode", "registry_directory"]
