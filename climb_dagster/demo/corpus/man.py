"""Manual pages rendered to plain text by `man` and `col`, one unit per page."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from climb_dagster.demo.corpus.clean import split_paragraphs
from climb_dagster.demo.corpus.unit import Unit

# Fixed width and locale, so line wrapping (and so the text) does not depend on the terminal.
_ENV = {"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


_BOX_DRAWING = re.compile(r"[\u2500-\u257f]")


def package_man_pages(package: str) -> list[Path]:
    """The page files a package ships (`dpkg -L`), without symlinks and `.so` redirect stubs."""
    listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    pages = []
    for line in sorted(set(listing.splitlines())):
        path = Path(line)
        if "/man/man" not in line or not line.endswith(".gz") or path.is_symlink() or not path.is_file():
            continue
        with gzip.open(path, "rt", errors="replace") as f:
            head = f.read(200).lstrip()
        if head.startswith(".so "):
            continue
        pages.append(path)
    return pages


def render_man_page(path: Path) -> str:
    """Plain text of one page: no justification or hyphenation, overstrike removed by `col -bx`."""
    man = subprocess.run(
        ["man", "--nj", "--nh", "-l", str(path)], capture_output=True, env=_ENV, check=False, timeout=60
    )
    col = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True, env=_ENV, check=True)
    return col.stdout.decode("utf-8", errors="replace")


def man_page_paragraphs(text: str) -> list[str]:
    """Paragraphs of a rendered page without its running header and footer lines."""
    lines = text.split("\n")
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if len(nonblank) < 3:
        return []
    body = "\n".join(lines[nonblank[0] + 1 : nonblank[-1]])
    # tbl draws table borders with box-drawing characters; the cell text is what carries meaning.
    return split_paragraphs(_BOX_DRAWING.sub(" ", body))


def man_units(package: str, domain: str, workers: int = 4) -> Iterator[Unit]:
    """Units of every page of `package`, rendered in parallel threads (the work is in subprocesses)."""
    for tool in ("man", "col", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` not found: apt-get install -y man-db bsdextrautils dpkg")
    pages = package_man_pages(package)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, text in zip(pages, pool.map(render_man_page, pages), strict=True):
            name = path.name.removesuffix(".gz")
            stem, _, section = name.rpartition(".")
            paragraphs = man_page_paragraphs(text)
            if paragraphs:
                yield Unit(domain, f"{package}:{name}", f"{stem}({section})", paragraphs)
