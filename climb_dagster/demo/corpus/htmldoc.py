"""HTML pages to paragraphs with the stdlib parser: keep the main content, drop navigation boilerplate."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from climb_dagster.demo.corpus.clean import clean_text
from climb_dagster.demo.corpus.unit import Unit

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {
    "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "pre", "blockquote", "section",
    "article", "br", "hr", "caption", "figure", "main", "body", "title", "tbody", "thead",
}  # fmt: skip
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}
_SKIP_TAGS = {"script", "style", "nav", "noscript", "form", "button", "svg", "footer", "head"}
# Navigation and index chrome of Sphinx, DocBook, Publican and texinfo output.
_SKIP_CLASSES = {
    "headerlink", "navheader", "navfooter", "sphinxsidebar", "related", "footer", "docnav", "toc",
    "list-of-tables", "list-of-figures", "list-of-examples", "header", "nav-panel", "breadcrumbs",
    "section-toc", "contents", "element-contents", "mini-toc", "version_switcher_placeholder",
    "language_switcher_placeholder", "inline-search", "clearer", "copyright", "legalnotice",
    "index-cp", "index-vr", "index-fn", "summary-letter", "printfooter", "navigation",
}  # fmt: skip
_SKIP_IDS = {"banner", "search", "searchbox", "sidebar", "footer", "site-footer"}
_SKIP_ROLES = {"navigation", "search"}
_WS = re.compile(r"\s+")


@dataclass
class Block:
    """A paragraph of a page; `level` is 1-6 for headings, 0 for body text."""

    level: int
    text: str


class _Extractor(HTMLParser):
    def __init__(self, main: Callable[[str, dict[str, str]], bool] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.main = main
        self.blocks: list[Block] = []
        self.title = ""
        self._in_title = False
        self._buf: list[str] = []
        self._pre = 0
        self._level = 0
        # (tag, depth) of an element whose subtree is skipped / is the main content.
        self._skip: list[str | int] = []
        self._main: list[str | int] = []
        self._main_seen = False

    def _active(self) -> bool:
        return not self._skip and (self.main is None or bool(self._main))

    def _flush(self) -> None:
        text = "".join(self._buf)
        self._buf = []
        text = text.strip("\n") if self._pre else _WS.sub(" ", text).strip()
        if text.strip() and self._active():
            self.blocks.append(Block(self._level, text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for stack in (self._skip, self._main):
            if stack and tag == stack[0] and tag not in _VOID:
                stack[1] += 1  # type: ignore[operator]
        if tag == "title":
            self._in_title = True
        if self._skip or tag in _VOID and tag != "br":
            return
        classes = set(a.get("class", "").split())
        skip = tag in _SKIP_TAGS or classes & _SKIP_CLASSES
        if skip or a.get("id", "") in _SKIP_IDS or a.get("role", "") in _SKIP_ROLES:
            self._flush()
            self._skip = [tag, 0]
            return
        if self.main is not None and not self._main and self.main(tag, a):
            self._flush()
            self._main = [tag, 0]
            self._main_seen = True
        if tag in _BLOCKS:
            self._flush()
            if tag in _HEADINGS:
                self._level = int(tag[1])
            if tag == "pre":
                self._pre += 1
        elif tag in ("td", "th"):
            self._buf.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip:
            if tag == self._skip[0]:
                if self._skip[1] == 0:
                    self._skip = []
                else:
                    self._skip[1] -= 1  # type: ignore[operator]
            return
        if tag in _BLOCKS:
            self._flush()
            if tag in _HEADINGS:
                self._level = 0
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        if self._main and tag == self._main[0]:
            if self._main[1] == 0:
                self._flush()
                self._main = []
            else:
                self._main[1] -= 1  # type: ignore[operator]

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self._skip:
            self._buf.append(data)


@dataclass
class Page:
    """Title and paragraphs of one HTML file."""

    title: str
    blocks: list[Block] = field(default_factory=list)


def parse_html(html: str, main: Callable[[str, dict[str, str]], bool] | None = None) -> Page:
    """Parse a page into heading/body blocks; with `main`, keep only the first element it accepts."""
    parser = _Extractor(main)
    parser.feed(html)
    parser.close()
    parser._flush()
    if main is not None and not parser._main_seen:
        # No main container (e.g. a hand-written page): fall back to the whole body.
        return parse_html(html, None)
    h1 = next((b.text for b in parser.blocks if b.level == 1), "")
    title = clean_text(_WS.sub(" ", h1 or parser.title))
    return Page(title=title, blocks=parser.blocks)


def sphinx_main(tag: str, attrs: dict[str, str]) -> bool:
    """Sphinx puts the page body in `div[role=main]`."""
    return attrs.get("role") == "main"


def page_units(
    path: Path,
    domain: str,
    source: str,
    main: Callable[[str, dict[str, str]], bool] | None = None,
    split_level: int = 0,
) -> Iterator[Unit]:
    """Units of one HTML file: the whole page, or one per heading of `split_level` (single-page manuals)."""
    page = parse_html(path.read_text(encoding="utf-8", errors="replace"), main)
    title, paragraphs = page.title, []
    for block in page.blocks:
        if split_level and 0 < block.level <= split_level:
            if paragraphs:
                yield Unit(domain, source, title, paragraphs)
            title, paragraphs = f"{page.title}: {clean_text(block.text)}", []
        text = clean_text(block.text)
        if text:
            paragraphs.append(text)
    if paragraphs:
        yield Unit(domain, source, title, paragraphs)
