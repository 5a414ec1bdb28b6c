"""One filesystem view for local folders and s3:// prefixes, with all-or-nothing writes."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from upath import UPath

from climb_dagster.core.io.redact import redact, refuse_credentials
from climb_dagster.core.io.settings import Settings


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


def _temp_sibling(path: UPath) -> UPath:
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"


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
        tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
        path.fs.get(path.path, str(tmp))
        os.replace(tmp, target)
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


def local_dir_copy(path: UPath) -> Path:
    """A local folder with the files of `path` (one level deep, plus subfolders recursively when remote)."""
    if is_local(path):
        return Path(path.path)
    marker = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    target = cache_dir() / f"dir-{marker}"
    done = target / ".complete"
    if not done.exists():
        tmp = cache_dir() / f"dir-{marker}.tmp-{uuid.uuid4().hex[:8]}"
        path.fs.get(path.path.rstrip("/") + "/", str(tmp), recursive=True)
        (tmp / ".complete").write_text("ok")
        if done.exists():  # another process finished the same copy meanwhile: keep its folder in place
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            return target
        if target.exists():
            import shutil

            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def _publish_order(files: list[Path], root: Path) -> list[Path]:
    """Data files first, then top-level JSON (index.json, result.json, manifest.json): the marker that a
    folder is complete is published after everything it describes."""
    return sorted(files, key=lambda p: (p.parent == root and p.suffix == ".json", p.as_posix()))


def upload_dir(local: Path, path: UPath) -> None:
    """Publish a local folder at `path` without ever rewriting a published file in place.

    Local: the folder is copied to a temporary sibling; a new folder is renamed into place whole, an existing
    one gets each file by atomic rename (new inode), so memory maps of the old files stay valid (rewriting
    under a live map truncates it: SIGBUS in the reader). Remote: each object is written atomically.
    """
    if is_local(path):
        _publish_local_dir(local, Path(path.path))
        return
    for file in _publish_order([p for p in local.rglob("*") if p.is_file()], local):
        atomic_write_bytes(path / file.relative_to(local).as_posix(), file.read_bytes())


def _publish_local_dir(local: Path, dest: Path) -> None:
    import shutil

    if dest.exists() and dest.resolve() == local.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        shutil.copytree(local, tmp)
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
