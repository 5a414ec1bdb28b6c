"""Which Debian package feeds which domain, under which licence, and how its text is extracted."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from climb_dagster.demo.corpus.dictd import dictd_units
from climb_dagster.demo.corpus.fortunes import SKIPPED_FILES, fortune_units
from climb_dagster.demo.corpus.htmldoc import page_units, sphinx_main
from climb_dagster.demo.corpus.info import info_units
from climb_dagster.demo.corpus.kernel import kernel_units
from climb_dagster.demo.corpus.licenses import license_units
from climb_dagster.demo.corpus.man import man_units
from climb_dagster.demo.corpus.rdata import austen_units
from climb_dagster.demo.corpus.religious import dhammapada_units, kjv_units
from climb_dagster.demo.corpus.sword import zcom4_units
from climb_dagster.demo.corpus.unit import DEFAULT_ROOTS, MissingSourceError, Unit, locate

# Index, search and table-of-contents pages: lists of links, not text.
_INDEX_PAGES = ("genindex", "py-modindex", "search", "index", "bookindex", "contents", "ix01")


@dataclass(frozen=True)
class Source:
    """One Debian package: the path that proves it is present, and its extractor given that path."""

    domain: str
    package: str
    licence: str
    path: str
    extract: Callable[[Path, str, str], Iterator[Unit]]


def _html_dir(
    pattern: str,
    main: Callable[[str, dict[str, str]], bool] | None = None,
    split_level: int = 0,
    skip: tuple[str, ...] = (),
) -> Callable[[Path, str, str], Iterator[Unit]]:
    """Extractor of every HTML file matching `pattern` under a directory, index/TOC pages skipped."""

    def extract(root: Path, domain: str, package: str) -> Iterator[Unit]:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            stem = path.name.split(".")[0]
            if stem.startswith(_INDEX_PAGES) or rel.startswith("_") or path.name in skip:
                continue
            for unit in page_units(path, domain, f"{package}:{rel}", main, split_level):
                if not unit.title.endswith(("Table of Contents", "Index")):
                    yield unit

    return extract


def _dictd(name: str) -> Callable[[Path, str, str], Iterator[Unit]]:
    def extract(index: Path, domain: str, package: str) -> Iterator[Unit]:
        dict_dz = index.with_name(f"{name}.dict.dz")
        yield from dictd_units(index, dict_dz, domain, f"{package}:{name}")

    return extract


# Fortune files come from several packages; the rest of /usr/share/games/fortunes is `fortunes`.
_FORTUNE_PACKAGES = {
    "fortunes": "fortunes-min",
    "bofh-excuses": "fortunes-bofh-excuses",
    "debian-hints": "fortunes-debian-hints",
}


def _fortunes(root: Path, domain: str, package: str) -> Iterator[Unit]:
    for path in sorted(root.iterdir()):
        if "." in path.name or path.name in SKIPPED_FILES or path.is_dir() or path.is_symlink():
            continue
        owner = _FORTUNE_PACKAGES.get(path.name, "fortunes")
        yield from fortune_units(path, domain, f"{owner}:{path.name}")


def _fortunes_present(root: Path, domain: str, package: str) -> Iterator[Unit]:
    # Files of fortunes-min/-bofh-excuses/-debian-hints are read by the `fortunes` source.
    yield from ()


SOURCES: tuple[Source, ...] = (
    Source("python_docs", "python3-doc", "PSF-2.0", "/usr/share/doc/python3-doc/html",
           _html_dir("**/*.html", sphinx_main)),
    Source("unix_manpages", "manpages", "Linux-man-pages-copyleft, GPL-2+ and others (per page)",
           "/usr/share/man/man2/open.2.gz", lambda _p, d, pkg: man_units(pkg, d)),
    Source("unix_manpages", "manpages-dev", "Linux-man-pages-copyleft, GPL-2+ and others (per page)",
           "/usr/share/man/man3/printf.3.gz", lambda _p, d, pkg: man_units(pkg, d)),
    Source("postgres_docs", "postgresql-doc-15", "PostgreSQL", "/usr/share/doc/postgresql-doc-15/html",
           _html_dir("*.html")),
    Source("linux_kernel_docs", "linux-doc-6.1", "GPL-2", "/usr/share/doc/linux-doc-6.1/Documentation",
           lambda p, d, pkg: kernel_units(p, d, pkg)),
    Source("sysadmin_debian", "debian-handbook", "GPL-2+ or CC-BY-SA-3.0",
           "/usr/share/doc/debian-handbook/html/en-US", _html_dir("*.html")),
    Source("sysadmin_debian", "debian-reference-en", "GPL-2+", "/usr/share/debian-reference",
           _html_dir("*.en.html")),
    Source("sysadmin_debian", "debian-faq", "GPL-2+ (verbatim/modified copies permitted)",
           "/usr/share/doc/debian/FAQ", _html_dir("*.en.html")),
    Source("sysadmin_debian", "maint-guide", "GPL-2+ / MIT", "/usr/share/doc/maint-guide/html",
           _html_dir("*.en.html")),
    Source("sysadmin_debian", "debian-policy", "GPL-2+", "/usr/share/doc/debian-policy/policy.html",
           _html_dir("*.html", sphinx_main)),
    Source("sysadmin_debian", "developers-reference", "GPL-2", "/usr/share/developers-reference",
           _html_dir("*.html", sphinx_main, skip=("developers-reference.html",))),
    Source("religious", "bible-kjv-text", "public domain (text); GPL-2+ (program)", "/usr/lib/bible.data",
           lambda _p, d, _pkg: kjv_units(d)),
    Source("religious", "sword-comm-mhcc", "public domain", "/usr/share/sword/modules/comments/zcom/mhcc",
           lambda p, d, pkg: zcom4_units(p, d, f"{pkg}:mhcc", "MHCC")),
    Source("religious", "display-dhammapada", "public domain (translation by J. Richards); GPL-3+ (program)",
           "/usr/share/display-dhammapada/dhammapada-english-transl.txt",
           lambda p, d, pkg: dhammapada_units(p, d, f"{pkg}:{p.name}")),
    Source("quotes_humor", "fortunes", "BSD-3-Clause", "/usr/share/games/fortunes/literature", _fortunes_present),
    Source("quotes_humor", "fortunes-min", "BSD-3-Clause", "/usr/share/games/fortunes/fortunes",
           lambda p, d, pkg: _fortunes(p.parent, d, pkg)),
    Source("quotes_humor", "fortunes-bofh-excuses", "public domain", "/usr/share/games/fortunes/bofh-excuses",
           _fortunes_present),
    Source("quotes_humor", "fortunes-debian-hints", "BSD-3-Clause", "/usr/share/games/fortunes/debian-hints",
           _fortunes_present),
    Source("quotes_humor", "dict-devil", "public domain", "/usr/share/dictd/devil.index", _dictd("devil")),
    Source("lexicon", "dict-gcide", "GPL-2+", "/usr/share/dictd/gcide.index", _dictd("gcide")),
    Source("lexicon", "dict-wn", "WordNet 3.0 licence", "/usr/share/dictd/wn.index", _dictd("wn")),
    Source("computing_encyclopedia", "dict-foldoc", "GFDL-1.1+", "/usr/share/dictd/foldoc.index", _dictd("foldoc")),
    Source("computing_encyclopedia", "dict-jargon", "public domain", "/usr/share/dictd/jargon.index", _dictd("jargon")),
    Source("legal_licenses", "base-files", "licence texts and installed packages' copyright files (verbatim copying permitted)",
           "/usr/share/common-licenses", lambda p, d, _pkg: license_units(p, Path("/usr/share/doc"), d)),
    Source("literature", "r-cran-janeaustenr", "public domain (novels); MIT (package)",
           "/usr/lib/R/site-library/janeaustenr/data", lambda p, d, pkg: austen_units(p, d, f"{pkg}:Rdata.rdb")),
    Source("sci_computing_manuals", "octave-doc", "GPL-3+", "/usr/share/info/octave.info-1.gz",
           lambda p, d, pkg: info_units(sorted(p.parent.glob("octave.info-*.gz")), d, f"{pkg}:octave.info", "Octave")),
    Source("sci_computing_manuals", "r-doc-html", "GPL-2+", "/usr/share/R/doc/manual",
           _html_dir("*.html", split_level=2)),
)  # fmt: skip

# Tools the extractors run, with the package that ships each.
TOOLS = {"man": "man-db", "col": "bsdextrautils", "bible": "bible-kjv", "dpkg": "dpkg"}


def check_sources(sources: Sequence[Source], roots: Sequence[Path] = DEFAULT_ROOTS) -> dict[str, Path]:
    """Locate every source's path; raise one error naming all missing packages and the command to fix it."""
    import shutil

    found: dict[str, Path] = {}
    missing: list[MissingSourceError] = []
    for source in sources:
        try:
            found[source.package] = locate(source.path, source.package, roots)
        except MissingSourceError as err:
            missing.append(err)
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            missing.append(MissingSourceError(package, tool))
    if missing:
        raise MissingSourceError.combine(missing)
    return found
