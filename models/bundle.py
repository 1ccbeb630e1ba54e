"""Versioned artifact bundles: every model `tdr train` produces, saved together with a manifest.

A bundle is a folder WS/bundles/<version>/ holding one file per component plus manifest.json (version, creation
time, hash of the data it saw, per-file sha256, metrics, feature list). WS/bundles/CURRENT names the bundle in
force; it is switched atomically after the new bundle is complete, so a reader never sees half a bundle.

One writer at a time: a `BundleWriter` holds an exclusive lock on WS/bundles/.writer.lock (released by the
kernel when its process dies, even by SIGKILL), so any staging folder (.<version>.*) it finds on starting is a
killed writer's and is removed. `prune` removes old bundles, never the one CURRENT names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.workspace import write_text_atomic

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
WRITER_LOCK = ".writer.lock"


class BundleBusyError(RuntimeError):
    """Another process is writing a bundle into the same folder."""


def _writer_lock(bundles_dir: Path) -> int:
    """An exclusive lock on the bundles folder, held through the returned descriptor."""
    fd = os.open(bundles_dir / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BundleBusyError(f"another process is training into {bundles_dir}") from None
    return fd


def stale_staging(bundles_dir: Path) -> list[Path]:
    """Staging folders of writers that are gone; call only while holding the writer lock."""
    return sorted(p for p in Path(bundles_dir).glob(".*") if p.is_dir())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_hash(paths: Iterable[Path]) -> str:
    """Hash of the input tables a bundle was trained on (names and bytes, in sorted order)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: str
    data_hash: str
    files: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


class BundleWriter:
    """Collects components in a staging folder; `commit()` seals the manifest and switches CURRENT."""

    def __init__(self, bundles_dir: Path, data_hash: str) -> None:
        self.bundles_dir = Path(bundles_dir)
        self.bundles_dir.mkdir(parents=True, exist_ok=True)
        self._lock: int | None = _writer_lock(self.bundles_dir)
        for stale in stale_staging(self.bundles_dir):
            shutil.rmtree(stale, ignore_errors=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.version = f"{stamp}-{data_hash[:8]}"
        self.data_hash = data_hash
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.version}.", dir=self.bundles_dir))
        self.metrics: dict[str, Any] = {}
        self.info: dict[str, Any] = {}

    def path(self, name: str) -> Path:
        """Where a component writes its file(s) inside the staging folder."""
        return self.staging / name

    def commit(self) -> Path:
        files = {
            str(p.relative_to(self.staging)): file_sha256(p)
            for p in sorted(self.staging.rglob("*"))
            if p.is_file()
        }
        manifest = Manifest(
            version=self.version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data_hash=self.data_hash,
            files=files,
            metrics=self.metrics,
            info=self.info,
        )
        (self.staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        final = self.bundles_dir / self.version
        os.replace(self.staging, final)
        write_text_atomic(self.bundles_dir / CURRENT, self.version + "\n")
        self._release()
        return final

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None


def current_bundle_dir(bundles_dir: Path) -> Path:
    pointer = Path(bundles_dir) / CURRENT
    if not pointer.exists():
        raise FileNotFoundError(f"no trained bundle in {bundles_dir}; run `tdr train` first")
    return Path(bundles_dir) / pointer.read_text(encoding="utf-8").strip()


def bundle_versions(bundles_dir: Path) -> list[str]:
    """The complete bundles in the folder (those with a manifest), oldest first (versions start with their
    creation time)."""
    return sorted(
        p.name for p in Path(bundles_dir).iterdir() if not p.name.startswith(".") and (p / MANIFEST).exists()
    )


def prune(bundles_dir: Path, keep: int) -> list[str]:
    """Remove all but the `keep` newest bundles, never the one CURRENT names; returns the removed versions.

    Each is first renamed to a staging-like .pruned-<version> (one atomic step, so no reader finds half a
    bundle under its name), then deleted; a prune killed in between leaves a folder the next writer sweeps."""
    if keep < 1:
        raise ValueError("keep at least one bundle")
    bundles_dir = Path(bundles_dir)
    current = current_bundle_dir(bundles_dir).name if (bundles_dir / CURRENT).exists() else None
    versions = bundle_versions(bundles_dir)
    removed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
    for version in removed:
        doomed = bundles_dir / f".pruned-{version}"
        os.replace(bundles_dir / version, doomed)
        shutil.rmtree(doomed)
    return removed


def read_manifest(bundle_dir: Path) -> Manifest:
    return Manifest.from_json((Path(bundle_dir) / MANIFEST).read_text(encoding="utf-8"))


def verify(bundle_dir: Path) -> None:
    """Raise if any component file differs from the manifest (a corrupted or tampered bundle)."""
    manifest = read_manifest(bundle_dir)
    for name, digest in manifest.files.items():
        if file_sha256(Path(bundle_dir) / name) != digest:
            raise ValueError(f"bundle {manifest.version}: file {name} does not match its manifest hash")
