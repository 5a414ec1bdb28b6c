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
    """A Debian package the corpus is built from is not on this machine."""

    def __init__(self, package: str, path: str) -> None:
        if package in DOWNLOAD_ONLY:
            how = (
                f"mkdir -p /tmp/debs && cd /tmp/debs && apt-get download {package} && "
                f"dpkg-deb -x {package}_*.deb {UNPACKED_ROOT}"
            )
        else:
            how = f"apt-get update && apt-get install -y --no-install-recommends {package}"
        super().__init__(f"missing Debian package {package!r} (no {path}); install it with:\n    {how}")
        self.package = package


def locate(path: str, package: str, roots: Sequence[Path] = DEFAULT_ROOTS) -> Path:
    """Absolute `path` under the first root that has it; raise `MissingSourceError` naming `package` if none."""
    for root in roots:
        candidate = root / path.lstrip("/")
        if candidate.exists():
            return candidate
    raise MissingSourceError(package, path)
