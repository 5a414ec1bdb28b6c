"""What every extractor yields, and how it finds the files of a Debian package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Packages too big or too dependency-heavy to install: fetched with `apt-get download` and unpacked here.
UNPACKED_ROOT = Path("/var/cache/climb-demo/root")
DEFAULT_ROOTS: tuple[Path, ...] = (Path("/"), UNPACKED_ROOT)
# Packages read from an unpacked .deb rather than an installed one.
DOWNLOAD_ONLY = frozenset({"linux-doc-6.1", "debian-handbook", "r-cran-janeaustenr"})


@dataclass(frozen=True)
class Unit:
    """One page/chapter/entry group of a source: the unit a train/validation split should keep whole."""

    domain: str
    source: str
    title: str
    paragraphs: list[str]


class MissingSourceError(RuntimeError):
    """Debian packages the corpus is built from are not on this machine; the message says how to get them."""

    def __init__(self, package: str, path: str, *more: tuple[str, str]) -> None:
        self.missing = [(package, path), *more]
        packages = sorted({p for p, _ in self.missing})
        lines = [f"missing Debian package {p!r} (no {w})" for p, w in self.missing]
        install = [p for p in packages if p not in DOWNLOAD_ONLY]
        download = [p for p in packages if p in DOWNLOAD_ONLY]
        if install:
            lines.append(
                "install with:\n    apt-get update && apt-get install -y --no-install-recommends "
                + " ".join(install)
            )
        if download:
            lines.append(
                f"fetch and unpack (not installed: too big or needs R) with:\n    mkdir -p /tmp/debs && cd /tmp/debs"
                f" && apt-get download {' '.join(download)} && for f in *.deb; do dpkg-deb -x $f {UNPACKED_ROOT}; done"
            )
        super().__init__("\n".join(lines))
        self.packages = packages

    @classmethod
    def combine(cls, errors: Sequence[MissingSourceError]) -> MissingSourceError:
        """One error listing the missing packages of all `errors`."""
        pairs = [pair for err in errors for pair in err.missing]
        return cls(*pairs[0], *pairs[1:])


def locate(path: str, package: str, roots: Sequence[Path] = DEFAULT_ROOTS) -> Path:
    """Absolute `path` under the first root that has it; raise `MissingSourceError` naming `package` if none."""
    for root in roots:
        candidate = root / path.lstrip("/")
        if candidate.exists():
            return candidate
    raise MissingSourceError(package, path)
