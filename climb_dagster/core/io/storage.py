"""One filesystem view for local folders and s3:// prefixes, with all-or-nothing writes and bounded copies.

Temporary files and folders are named `.<name>.tmp-<12 hex>` beside their destination (or in the cache). A
local one is locked (flock) by its writer while it is written: a writer that fails removes its temporary;
one killed outright leaves it unlocked, and the next copy into the same folder (`sweep_temps`) or the
retention job removes it. Remote temporaries (s3) cannot be locked: the retention job removes them by age.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from upath import UPath

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.redact import redact, refuse_credentials
from climb_dagster.core.io.settings import Settings

TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")
# An unlocked temporary younger than this may be one whose writer has created it but not yet locked it.
TEMP_GRACE_S = 10.0


def s3_storage_options(
    endpoint_url: str | None = None,
    region: str | None = None,
    max_attempts: int = 8,
) -> dict[str, Any]:
    """s3fs options: custom endpoint (MinIO, moto) and botocore retries with backoff for 5xx/throttling.

    Credentials are never passed here: botocore reads them from the environment or the instance profile.
    """
    opts: dict[str, Any] = {
        "config_kwargs": {"retries": {"max_attempts": max_attempts, "mode": "standard"}},
    }
    client_kwargs: dict[str, Any] = {}
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    return opts


def make_path(
    base: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, what: str = "storage URL"
) -> UPath:
    """A UPath for a local folder or a remote URL (s3://bucket/prefix).

    A URL that embeds credentials (`s3://KEY:SECRET@bucket`) is refused, naming `what` with the secret
    masked: credentials in a URL end up in every path, log line and metadata entry derived from it.
    """
    base = str(base)
    if "://" in base and not base.startswith("file://"):
        refuse_credentials(base, what)
        return UPath(base, **(storage_options or {}))
    return UPath(os.path.abspath(base.removeprefix("file://")))


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


class StorageError(OSError):
    """A storage request failed (after the client's retries); the message names endpoint, bucket and path."""


def describe_location(path: UPath) -> str:
    """'s3://bucket/key (bucket 'bucket', endpoint http://...)' for remote paths, the path itself when local."""
    if is_local(path):
        return str(path)
    options = getattr(path, "storage_options", None) or {}
    endpoint = (options.get("client_kwargs") or {}).get("endpoint_url") or "the default AWS endpoint"
    bucket = str(path.path).lstrip("/").split("/", 1)[0]
    return redact(f"{path} (bucket {bucket!r}, endpoint {endpoint})")


def _remote_errors() -> tuple[type[BaseException], ...]:
    """OSError (s3fs translates most S3 errors) plus botocore's own (dropped connections, endpoint errors)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - s3fs always brings botocore
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


@contextmanager
def storage_errors(path: UPath, action: str, keep: tuple[type[OSError], ...] = ()) -> Iterator[None]:
    """Re-raise a remote storage failure (503 after retries, access denied, missing bucket, dropped
    connections) as StorageError naming the action, the path, its bucket and the endpoint.
    Exceptions of the types in `keep` pass unchanged."""
    try:
        yield
    except StorageError:
        raise
    except _remote_errors() as exc:
        if is_local(path) or isinstance(exc, keep):
            raise
        raise StorageError(
            redact(f"{action} {describe_location(path)} failed: {type(exc).__name__}: {exc}")
        ) from exc


def temp_name(name: str) -> str:
    return f".{name}.tmp-{uuid.uuid4().hex[:12]}"


def _temp_sibling(path: UPath) -> UPath:
    return path.parent / temp_name(path.name)


def _lock(path: str | os.PathLike[str]) -> int:
    """An open descriptor of `path` holding an exclusive lock, released when closed or the process dies."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextmanager
def _locked_temp_folder(parent: Path, name: str) -> Iterator[Path]:
    """A new, locked temporary folder in `parent`; removed on the way out unless the caller renamed it."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(parent)
    tmp = parent / temp_name(name)
    tmp.mkdir()
    fd = _lock(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def _remove_if_abandoned(path: str, grace_s: float, now: float) -> bool:
    """Remove a local temporary nobody writes any more: unlocked and older than `grace_s`."""
    try:
        if now - os.lstat(path).st_mtime < grace_s:
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        return True
    finally:
        os.close(fd)


def sweep_temps(folder: str | os.PathLike[str], grace_s: float = TEMP_GRACE_S) -> list[str]:
    """Remove the temporaries in local `folder` (not below it) left by killed writers; return their paths."""
    try:
        names = [e.name for e in os.scandir(folder) if TEMP_NAME.match(e.name)]
    except OSError:
        return []
    now = time.time()
    return [str(Path(folder) / n) for n in names if _remove_if_abandoned(str(Path(folder) / n), grace_s, now)]


def sweep_temps_below(root: UPath, max_age_s: float, grace_s: float = TEMP_GRACE_S) -> list[str]:
    """Every abandoned temporary under `root`: local ones unlocked (and older than `grace_s`), remote ones
    older than `max_age_s` (an object store has no locks). Used by the retention job."""
    if is_local(root):
        removed = []
        for dirpath, dirnames, _ in os.walk(root.path):
            removed += sweep_temps(dirpath, grace_s)
            dirnames[:] = [d for d in dirnames if not TEMP_NAME.match(d)]
        return removed
    if not root.exists():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for key, info in root.fs.find(root.path, detail=True).items():
        if TEMP_NAME.match(key.rsplit("/", 1)[-1]) and _modified(info) <= cutoff:
            root.fs.rm_file(key)
            removed.append(key)
    return removed


def _modified(info: dict[str, Any]) -> float:
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp or 0.0)


def atomic_write(path: UPath, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `write(fileobj)` to a temporary sibling, then rename it onto `path`.

    Readers therefore see either the previous object or the complete new one, never a partial file.
    """
    if is_local(path):
        # Object stores have no folders; s3fs's mkdir would even create a missing bucket.
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        with tmp.open("wb") as f:
            if is_local(path):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # a sweep leaves a locked temporary alone
            write(f)
        if is_local(path):
            os.replace(tmp.path, path.path)
        else:
            # cp_file/rm_file act on exactly one key: mv/rm expand glob characters, and Dagster's step keys
            # of mapped ops (`round_1_train_proxy[r1_000]`) are in the paths of intermediate outputs.
            tmp.fs.cp_file(tmp.path, path.path)
            tmp.fs.rm_file(tmp.path)
    except BaseException:
        try:
            tmp.fs.rm_file(tmp.path)
        except (FileNotFoundError, OSError):
            pass
        raise


def atomic_write_bytes(path: UPath, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: UPath, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def cache_dir() -> Path:
    """Local folder for copies of remote objects that must be memory-mapped."""
    root = Settings.from_env().local_cache_dir()
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


def local_copy(path: UPath) -> Path:
    """A local file with the content of `path`: the file itself when local, else a cached download.

    The cache key includes the object's size and modification tag, so a rewritten object is fetched again.
    """
    if is_local(path):
        return Path(path.path)
    info = path.fs.info(path.path)
    tag = f"{path}|{info.get('size')}|{info.get('ETag') or info.get('LastModified') or info.get('mtime')}"
    target = cache_dir() / (hashlib.sha256(tag.encode()).hexdigest()[:24] + "-" + path.name)
    if not target.exists():
        sweep_temps(target.parent)
        tmp = target.with_name(temp_name(target.name))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path.fs.get(path.path, str(tmp))
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.close(fd)
    return target


def local_files_copy(path: UPath, names: Sequence[str]) -> Path:
    """A local folder holding the named files of the folder `path`: the folder itself when local, else a folder of
    cached downloads (only those files: e.g. a drop store's index and document table, not its tokens)."""
    if is_local(path):
        return Path(path.path)
    marker = hashlib.sha256(f"{path}|{'|'.join(names)}".encode()).hexdigest()[:24]
    target = cache_dir() / f"files-{marker}"
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = target / name
        if not link.exists():
            tmp = target / f"{name}.tmp-{uuid.uuid4().hex[:8]}"
            tmp.symlink_to(local_copy(path / name))
            os.replace(tmp, link)
    return target


@dataclass(frozen=True)
class FolderSize:
    files: int
    bytes: int


def _key(path: UPath | str) -> str:
    """`path` as one comparable string: the real path when local, protocol://bucket/key when remote."""
    p = path if isinstance(path, UPath) else make_path(path)
    if is_local(p):
        return os.path.realpath(p.path)
    return f"{p.protocol if isinstance(p.protocol, str) else p.protocol[0]}://{p.path.strip('/')}"


def _within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def check_copy_source(
    src: UPath,
    kind: str,
    dest: UPath | None = None,
    what: str | None = None,
    storage_root: UPath | None = None,
) -> FolderSize:
    """Refuse, before anything is copied, a folder that holds the storage root (`storage_root` or the
    settings'), the copy's destination or the local cache (the copy would grow into itself), or more than
    the cap of its `kind` (settings.COPY_CAPS, raised with CLIMB_COPY_CAPS). Local folders may not hold
    special files, linked folders, or links that leave them. Stops counting at the cap, so a huge folder is
    refused quickly."""
    settings = Settings.from_env()
    what = what or f"{kind} folder"
    here = _key(src)
    for name, place in (
        ("the storage root", storage_root),
        ("the storage root", settings.local_storage()),
        ("the copy's destination", dest),
        ("the local cache", settings.local_cache_dir()),
    ):
        if place is not None and _within(_key(place), here):
            raise ClimbInputError(
                f"{what} {redact(str(src))} holds {name} ({redact(str(place))}): copying it would copy the "
                "copy into itself; point to a folder that holds only what is to be copied"
            )
    cap = settings.copy_cap(kind)
    files = size = 0

    def count(n_bytes: int) -> None:
        nonlocal files, size
        files, size = files + 1, size + n_bytes
        if files > cap.max_files or size > cap.max_bytes:
            raise ClimbInputError(
                f"{what} {redact(str(src))} holds more than the cap of a {kind} copy ({cap.describe()}); "
                f"point to a smaller folder, or raise the cap with CLIMB_COPY_CAPS={kind}=<GiB>:<files>"
            )

    if not is_local(src):
        with storage_errors(src, f"listing {what}"):
            for _, _, entries in src.fs.walk(src.path, detail=True):
                for info in entries.values():
                    count(int(info.get("size") or 0))
        return FolderSize(files, size)
    for dirpath, dirnames, filenames in os.walk(src.path):
        for name in dirnames + filenames:
            _check_entry(Path(dirpath) / name, here, what, count)
    return FolderSize(files, size)


def _check_entry(path: Path, root: str, what: str, count: Callable[[int], None]) -> None:
    if path.is_symlink():
        if path.is_dir():
            raise ClimbInputError(f"{what}: {path} is a link to a folder; copy that folder in instead")
        if not _within(os.path.realpath(path), root):
            raise ClimbInputError(
                f"{what}: {path} links to {os.path.realpath(path)}, outside the folder; copy the file in"
            )
    try:
        info = path.stat()
    except OSError as exc:
        raise ClimbInputError(f"{what}: cannot read {path} ({exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise ClimbInputError(f"{what}: {path} is not a regular file (a pipe, socket or device)")
    count(info.st_size)


def local_dir_copy(path: UPath, kind: str) -> Path:
    """A local folder with the files of `path`: the folder itself when local, else a cached download of a
    folder within the cap of `kind` (see check_copy_source)."""
    if is_local(path):
        return Path(path.path)
    marker = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    target = cache_dir() / f"dir-{marker}"
    done = target / ".complete"
    if not done.exists():
        check_copy_source(path, kind)
        with _locked_temp_folder(cache_dir(), target.name) as tmp:
            path.fs.get(path.path.rstrip("/") + "/", str(tmp) + "/", recursive=True)
            (tmp / ".complete").write_text("ok")
            if done.exists():  # another process finished the same copy meanwhile: keep its folder in place
                return target
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
    return target


def _publish_order(files: list[Path], root: Path) -> list[Path]:
    """Data files first, then top-level JSON (index.json, result.json, manifest.json): the marker that a
    folder is complete is published after everything it describes."""
    return sorted(files, key=lambda p: (p.parent == root and p.suffix == ".json", p.as_posix()))


def upload_dir(local: Path, path: UPath, kind: str) -> None:
    """Publish a local folder at `path` without ever rewriting a published file in place; the folder must be
    within the cap of `kind` and must not hold `path` (check_copy_source).

    Local: the folder is copied to a temporary sibling; a new folder is renamed into place whole, an existing
    one gets each file by atomic rename (new inode), so memory maps of the old files stay valid (rewriting
    under a live map truncates it: SIGBUS in the reader). Remote: each object is written atomically.
    """
    if is_local(path) and Path(path.path).exists() and Path(path.path).resolve() == local.resolve():
        return
    check_copy_source(make_path(local), kind, dest=path)
    if is_local(path):
        _publish_local_dir(local, Path(path.path))
        return
    for file in _publish_order([p for p in local.rglob("*") if p.is_file()], local):
        atomic_write_bytes(path / file.relative_to(local).as_posix(), file.read_bytes())


def _publish_local_dir(local: Path, dest: Path) -> None:
    with _locked_temp_folder(dest.parent, dest.name) as tmp:
        shutil.copytree(local, tmp, dirs_exist_ok=True)
        if not dest.exists():
            try:
                os.rename(tmp, dest)
                return
            except OSError:  # another writer published it first: fall through to file-by-file
                if not dest.is_dir():
                    raise
        new = _publish_order([p for p in tmp.rglob("*") if p.is_file()], tmp)
        for file in new:
            target = dest / file.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
        kept = {dest / f.relative_to(tmp) for f in new}
        for old in [p for p in dest.rglob("*") if p.is_file() and p not in kept]:
            old.unlink()  # unlinking keeps an open map's inode alive, unlike truncating it
