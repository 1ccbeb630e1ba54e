"""Versioned artifact bundles: every model `tdr train` produces, saved together with a manifest.

A bundle is a folder WS/bundles/<version>/ holding one file per component plus manifest.json (version, creation
time, hash of the data it saw, per-file sha256, metrics, feature list). WS/bundles/CURRENT names the bundle in
force; it is switched atomically after the new bundle is complete, so a reader never sees half a bundle.
"""

from __future__ import annotations

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
        return final

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def current_bundle_dir(bundles_dir: Path) -> Path:
    pointer = Path(bundles_dir) / CURRENT
    if not pointer.exists():
        raise FileNotFoundError(f"no trained bundle in {bundles_dir}; run `tdr train` first")
    return Path(bundles_dir) / pointer.read_text(encoding="utf-8").strip()


def read_manifest(bundle_dir: Path) -> Manifest:
    return Manifest.from_json((Path(bundle_dir) / MANIFEST).read_text(encoding="utf-8"))


def verify(bundle_dir: Path) -> None:
    """Raise if any component file differs from the manifest (a corrupted or tampered bundle)."""
    manifest = read_manifest(bundle_dir)
    for name, digest in manifest.files.items():
        if file_sha256(Path(bundle_dir) / name) != digest:
            raise ValueError(f"bundle {manifest.version}: file {name} does not match its manifest hash")
