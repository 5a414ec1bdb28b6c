"""Folder copies are bounded and self-checking (core/io/storage.py): a cap per kind, no copy of a folder that
holds the storage, the destination or the cache, and temporaries of killed writers swept."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIMB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLIMB_STORAGE_URL", raising=False)
    monkeypatch.delenv("CLIMB_COPY_CAPS", raising=False)


def _files(root: Path, n: int, size: int = 10) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"f{i}.bin").write_bytes(b"x" * size)
    return root


def test_caps_count_files_and_bytes_and_name_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = storage.make_path(_files(tmp_path / "src", 5, size=1000))
    assert storage.check_copy_source(src, "tokenizer") == storage.FolderSize(5, 5000)
    monkeypatch.setenv("CLIMB_COPY_CAPS", "tokenizer=1:4")
    with pytest.raises(
        ClimbInputError, match=r"tokenizer folder .*/src holds more than the cap .*\(1 GiB, 4 files\)"
    ):
        storage.check_copy_source(src, "tokenizer")
    monkeypatch.setenv("CLIMB_COPY_CAPS", f"tokenizer={4000 / 1024**3}:100")
    with pytest.raises(ClimbInputError, match="CLIMB_COPY_CAPS=tokenizer=<GiB>:<files>"):
        storage.upload_dir(Path(src.path), storage.make_path(tmp_path / "dest"), kind="tokenizer")
    assert not (tmp_path / "dest").exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


def test_a_folder_holding_the_storage_destination_or_cache_is_refused(tmp_path: Path):
    home = tmp_path / "home"
    (home / "storage" / "targets").mkdir(parents=True)
    with pytest.raises(ClimbInputError, match=r"holds the storage root \(.*home/storage\)"):
        storage.check_copy_source(storage.make_path(tmp_path), "lm_eval_tasks")
    other = tmp_path / "other"
    (other / "root").mkdir(parents=True)
    with pytest.raises(ClimbInputError, match="holds the storage root"):
        storage.check_copy_source(
            storage.make_path(other), "lm_eval_tasks", storage_root=storage.make_path(other / "root")
        )
    with pytest.raises(ClimbInputError, match="holds the copy's destination"):
        storage.upload_dir(other, storage.make_path(other / "root" / "copy"), kind="lm_eval_tasks")
    (tmp_path / "cache").mkdir()
    with pytest.raises(ClimbInputError, match="holds the local cache"):
        storage.check_copy_source(storage.make_path(tmp_path / "cache"), "lm_eval_tasks")
    # A remote folder holding a remote storage root.
    with pytest.raises(ClimbInputError, match="holds the storage root"):
        storage.check_copy_source(
            storage.make_path("memory://b/"), "checkpoint", storage_root=storage.make_path("memory://b/climb")
        )


def test_links_and_special_files_are_refused(tmp_path: Path):
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    for name, make, needle in [
        ("file-link", lambda d: (d / "l").symlink_to(outside), "links to .*secret.txt, outside the folder"),
        ("dir-link", lambda d: (d / "l").symlink_to(tmp_path), "is a link to a folder"),
        ("fifo", lambda d: os.mkfifo(d / "p"), "is not a regular file"),
        ("broken", lambda d: (d / "l").symlink_to(d / "nope"), "cannot read"),
    ]:
        src = _files(tmp_path / name, 1)
        make(src)
        with pytest.raises(ClimbInputError, match=needle):
            storage.check_copy_source(storage.make_path(src), "checkpoint")
    inside = _files(tmp_path / "inside", 1)
    (inside / "alias.bin").symlink_to(inside / "f0.bin")
    assert storage.check_copy_source(storage.make_path(inside), "checkpoint").files == 2


def test_remote_folder_copies_are_capped_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    remote = storage.make_path("memory://climb-unit/caps")
    for i in range(3):
        (remote / f"d/f{i}").write_bytes(b"abc")
    monkeypatch.setenv("CLIMB_COPY_CAPS", "checkpoint=1:2")
    with pytest.raises(ClimbInputError, match="memory://climb-unit/caps holds more than the cap"):
        storage.local_dir_copy(remote, kind="checkpoint")
    assert os.listdir(tmp_path / "cache") == []
    monkeypatch.delenv("CLIMB_COPY_CAPS")
    local = storage.local_dir_copy(remote, kind="checkpoint")
    assert sorted(p.name for p in (local / "d").iterdir()) == ["f0", "f1", "f2"]
    assert [n for n in os.listdir(tmp_path / "cache") if ".tmp-" in n] == []


def test_a_failed_copy_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A disk that fills up during the copy (the second file): the error propagates, nothing is left."""
    import shutil

    src = _files(tmp_path / "src", 3)
    real = shutil.copyfile
    calls = []

    def full_disk(a, b, **kw):
        calls.append(a)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(a, b, **kw)

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(OSError, match="No space left"):
        storage.upload_dir(src, storage.make_path(tmp_path / "out" / "dest"), kind="checkpoint")
    assert os.listdir(tmp_path / "out") == []
    remote = storage.make_path("memory://climb-unit/fails")
    (remote / "a").write_bytes(b"abc")
    monkeypatch.setattr(
        type(remote.fs), "get", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error"))
    )
    with pytest.raises(OSError, match="I/O error"):
        storage.local_dir_copy(remote, kind="checkpoint")
    assert os.listdir(tmp_path / "cache") == []


def test_sweep_removes_unlocked_temporaries_only(tmp_path: Path):
    parent = tmp_path / "p"
    parent.mkdir()
    dead = parent / storage.temp_name("dest")
    live = parent / storage.temp_name("dest")
    young = parent / storage.temp_name("dest")
    for d in (dead, live, young):
        d.mkdir()
        (d / "f").write_text("x")
    (parent / ".dest.tmp-notours").mkdir()
    old = time.time() - 60
    for d in (dead, live):
        os.utime(d, (old, old))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer at work
    try:
        assert storage.sweep_temps(parent) == [str(dead)]
    finally:
        os.close(fd)
    assert sorted(p.name for p in parent.iterdir()) == sorted([live.name, young.name, ".dest.tmp-notours"])


def test_remote_temporaries_are_swept_by_age(tmp_path: Path):
    root = storage.make_path("memory://climb-unit/sweep")
    tmp_key = root / "a" / storage.temp_name("x.json")
    for p in (tmp_key, root / "a" / "x.json"):
        p.write_bytes(b"{}")
    assert storage.sweep_temps_below(root, max_age_s=3600) == []
    assert [k.rsplit("/", 1)[-1] for k in storage.sweep_temps_below(root, max_age_s=0)] == [tmp_key.name]
    assert [p.name for p in (root / "a").iterdir()] == ["x.json"]
