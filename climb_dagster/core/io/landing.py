"""Which files of a landing location are crawl drops ready to ingest, and why every other file is not.

Pick-up rule: a file `<key><suffix>` (suffix in DROP_SUFFIXES) is ready once it has not been modified for
`settle_seconds` (a copy in progress keeps touching it). Writers that may pause longer write to a name
starting with '.' and rename when done: such names are never drops (the rename is the completion marker).
On S3 an object appears only when its upload completes, so the wait only guards against overwrites.
Refused as ambiguous, with every file involved named: one key with two suffixes (`a.parquet` + `a.jsonl`),
keys equal up to case (`A` and `a`), and a key equal up to case to an already known drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.io.corpus import DROP_SUFFIXES


@dataclass(frozen=True)
class LandedFile:
    name: str
    size: int
    mtime: float  # seconds since the epoch

    @property
    def fingerprint(self) -> str:
        """Changes whenever the file is rewritten: a failed drop is retried once its file changes."""
        return f"{self.size}-{self.mtime:.3f}"


@dataclass
class LandingScan:
    ready: dict[str, LandedFile] = field(default_factory=dict)  # drop key -> its file
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (file name, why it is not picked up)

    def summary(self, limit: int = 20) -> str:
        parts = [f"{name!r}: {why}" for name, why in self.ignored[:limit]]
        more = len(self.ignored) - limit
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _suffix(name: str) -> str | None:
    # Longest first: `a.jsonl.gz` is key `a` with suffix `.jsonl.gz`, not `a.jsonl` with `.gz`.
    for suffix in sorted(DROP_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def scan_landing(
    files: Iterable[LandedFile], now: float, settle_seconds: float, known_keys: Iterable[str] = ()
) -> LandingScan:
    """Split landed files into ready drops and ignored files, each with its reason."""
    scan = LandingScan()
    by_key: dict[str, list[tuple[str, LandedFile]]] = defaultdict(list)
    for file in sorted(files, key=lambda f: f.name):
        if file.name.startswith("."):
            scan.ignored.append(
                (file.name, "hidden or temporary file (names starting with '.' are never drops)")
            )
            continue
        suffix = _suffix(file.name)
        if suffix is None:
            scan.ignored.append(
                (file.name, f"not a drop: the name does not end in one of {', '.join(DROP_SUFFIXES)}")
            )
            continue
        key = file.name[: -len(suffix)]
        try:
            validate_key(key, "crawl drop")
        except ClimbInputError as exc:
            scan.ignored.append((file.name, str(exc)))
            continue
        by_key[key.lower()].append((key, file))
    known = {k.lower(): k for k in known_keys}
    for folded, entries in sorted(by_key.items()):
        names = [f.name for _, f in entries]
        if len(entries) > 1:
            why = (
                f"ambiguous drop key: {names} name the same drop (keys are compared ignoring case); keep one"
            )
            scan.ignored.extend((name, why) for name in names)
            continue
        key, file = entries[0]
        if folded in known and known[folded] != key:
            why = f"drop key {key!r} differs only in case from the known drop {known[folded]!r}; rename it"
            scan.ignored.append((file.name, why))
            continue
        age = now - file.mtime
        if age < settle_seconds:
            why = f"still settling: modified {age:.0f} s ago, picked up after {settle_seconds:.0f} s without change"
            scan.ignored.append((file.name, why))
            continue
        scan.ready[key] = file
    return scan
