"""Versioned publication of a multi-file artifact (an export): write a new version, then switch.

Layout under a root:
    manifest.json            the only entry point; names the current version and every file in it
    versions/<version>/...   the files of one version (shards, blend.json), never modified once written

A version is written completely before `manifest.json` is replaced (one atomic rename), so a reader that
starts from the manifest always sees the files it describes: a crash mid-export leaves the previous manifest
and its version untouched. After the switch, versions other than the current and the one just replaced (a
reader may still be streaming it) are deleted, with files of the pre-versioning layout and the version
folders of crashed exports (never named by a manifest, so never seen by a reader).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from upath import UPath

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage

MANIFEST = "manifest.json"
VERSIONS = "versions"
# Files of the earlier single-folder export layout, removed once a versioned export is published.
LEGACY_PATTERNS = ("train-*.parquet", "blend.json")


def new_version(root: UPath) -> UPath:
    """A fresh, empty version folder under `root` (names sort by creation time)."""
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    return root / VERSIONS / name


def relative(root: UPath, file: UPath) -> str:
    """`file`'s path relative to `root`, as written into the manifest."""
    return str(file.path)[len(str(root.path).rstrip("/")) + 1 :]


def read_manifest(root: UPath) -> dict[str, Any] | None:
    """The current manifest of `root`, or None before the first publication."""
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClimbInputError(f"{path}: corrupt manifest ({exc}); re-materialize the export") from exc
    if not isinstance(manifest, dict):
        raise ClimbInputError(f"{path}: manifest must be a JSON object")
    return manifest


def publish(root: UPath, version: UPath, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make `version` (already written completely) the current one of `root`; return the manifest written."""
    previous = read_manifest(root)
    document = {**manifest, "version": version.name, "version_path": relative(root, version)}
    storage.atomic_write_text(root / MANIFEST, json.dumps(document, indent=1, default=str))
    keep = {version.name, (previous or {}).get("version")}
    prune(root, keep)
    return document


def prune(root: UPath, keep: set[str | None]) -> list[str]:
    """Delete version folders not in `keep` (crashed or superseded exports) and legacy-layout files."""
    removed = []
    versions = root / VERSIONS
    if versions.exists():
        for entry in versions.iterdir():
            if entry.name not in keep:
                entry.fs.rm(entry.path, recursive=True)
                removed.append(entry.name)
    for pattern in LEGACY_PATTERNS:
        for legacy in root.glob(pattern):
            legacy.fs.rm_file(legacy.path)
            removed.append(legacy.name)
    return removed


def current_files(root: UPath) -> list[UPath]:
    """The files the current manifest names (its `shards` and `files`), refusing one that is missing."""
    manifest = read_manifest(root)
    if manifest is None:
        raise ClimbInputError(f"no {MANIFEST} under {root}: nothing has been published there")
    names = [s["file"] for s in manifest.get("shards", [])] + list(manifest.get("files", []))
    paths = [root / name for name in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ClimbInputError(f"{root / MANIFEST} names files that are missing: {missing[:5]}")
    return paths
