"""Demo corpus builder: chunking, cleaning, ids, parsers on fabricated inputs, and the committed drops."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import polars as pl
import pytest

from climb_dagster.core.common.schema import DOMAIN, ID, SOURCE, TEXT, TITLE
from climb_dagster.demo.corpus.build import DROP_FILES, BuildConfig, doc_id, sample_and_split, to_frame
from climb_dagster.demo.corpus.chunk import ChunkSpec, chunk_paragraphs
from climb_dagster.demo.corpus.clean import clean_text, split_paragraphs, word_count
from climb_dagster.demo.corpus.dictd import decode_b64_number, dictd_units, read_entries
from climb_dagster.demo.corpus.fortunes import parse_cookies
from climb_dagster.demo.corpus.htmldoc import parse_html, sphinx_main
from climb_dagster.demo.corpus.info import parse_info
from climb_dagster.demo.corpus.rdata import novel_units, unserialize
from climb_dagster.demo.corpus.religious import parse_bible_output
from climb_dagster.demo.corpus.sword import osis_paragraphs, read_zcom4_blocks
from climb_dagster.demo.corpus.unit import MissingSourceError, locate

DEMO_DATA = Path(__file__).resolve().parents[3] / "climb_dagster" / "demo" / "data"


def _para(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


# --- chunker ---------------------------------------------------------------------------------------


def test_chunks_respect_word_bounds_and_target():
    spec = ChunkSpec(target=300, min_words=100, max_words=1000)
    chunks = chunk_paragraphs([_para(80) for _ in range(40)], spec)
    counts = [word_count(c) for c in chunks]
    assert all(100 <= n <= 1000 for n in counts)
    assert all(n <= 320 for n in counts)  # whole 80-word paragraphs: never more than one past the target
    assert sum(counts) == 40 * 80  # nothing lost


def test_chunks_break_only_between_paragraphs():
    paragraphs = [_para(120, f"p{k}_") for k in range(9)]
    chunks = chunk_paragraphs(paragraphs, ChunkSpec(target=300))
    for chunk in chunks:
        for piece in chunk.split("\n\n"):
            assert piece in paragraphs


def test_overlong_paragraph_is_split_and_short_tail_merged_or_dropped():
    spec = ChunkSpec(target=350, min_words=100, max_words=1000)
    long = ". ".join(_para(50) for _ in range(50))  # 2,500 words of 50-word sentences
    chunks = chunk_paragraphs([long], spec)
    assert chunks and all(word_count(c) <= 1000 for c in chunks)
    assert chunk_paragraphs([_para(40)], spec) == []  # too short alone: dropped
    merged = chunk_paragraphs([_para(300), _para(30, "t")], spec)
    assert len(merged) == 1 and word_count(merged[0]) == 330


def test_chunk_spec_validated():
    with pytest.raises(ValueError, match="min_words <= target"):
        ChunkSpec(target=50, min_words=100)


# --- cleaning --------------------------------------------------------------------------------------


def test_clean_text_strips_controls_overstrike_and_whitespace():
    raw = "B\bBo\bol\bld  text\t here\x07\r\n\n\n\n\u200bnext\u00a0\u00a0line \ufeff"
    assert clean_text(raw) == "Bold text here\n\nnext line"


def test_clean_text_is_valid_utf8_and_nfc():
    out = clean_text("Cafe\u0301 \x00\x1b[0m ok")
    assert out == "Café [0m ok"
    out.encode("utf-8")


def test_split_paragraphs():
    assert split_paragraphs("a  b\n c\n\n\n\n d \n") == ["a b\nc", "d"]


# --- ids and splitting -----------------------------------------------------------------------------


def test_doc_id_stable_and_content_based():
    assert doc_id("lexicon", "hello") == "lexicon-aaf4c61ddcc5"
    assert doc_id("lexicon", "hello") == doc_id("lexicon", "hello")
    assert doc_id("lexicon", "hello ") != doc_id("lexicon", "hello")


def test_sample_and_split_caps_keeps_units_whole_and_is_seeded():
    docs = [
        {TEXT: f"{d} {u} {c}", SOURCE: "s", TITLE: f"{d}-{u}", DOMAIN: d}
        for d in ("a", "b")
        for u in range(30)
        for c in range(3)
    ]
    config = BuildConfig(docs_per_domain=50, seed=7)
    first, second = sample_and_split(docs, config)
    assert (first, second) == sample_and_split(docs, config)
    for d in ("a", "b"):
        n1 = sum(doc[DOMAIN] == d for doc in first)
        n2 = sum(doc[DOMAIN] == d for doc in second)
        assert n1 + n2 == 50 and n1 > 0 and n2 > 0
    assert not {doc[TITLE] for doc in first} & {doc[TITLE] for doc in second}
    frame = to_frame(first)
    assert frame.columns == [ID, TEXT, SOURCE, TITLE, DOMAIN]
    assert frame[ID].n_unique() == frame.height


# --- parsers on fabricated inputs -------------------------------------------------------------------


def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        digits = alphabet[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def test_dictd_number_decoding():
    assert decode_b64_number("A") == 0
    assert decode_b64_number("BA") == 64
    assert decode_b64_number(_b64(123456)) == 123456
    with pytest.raises(ValueError, match="not a dictd base-64"):
        decode_b64_number("A-")


def test_dictd_index_and_dict(tmp_path):
    entries = [
        "00-database-info\nThis file was converted by dictfmt.\n",
        "apple\n  n 1: fruit with red or yellow or green skin\n\n  2: native Eurasian tree\n",
        "pear\n  n 1: sweet juicy gritty-textured fruit\n",
    ]
    data = "".join(entries).encode()
    offsets, index = 0, []
    names = ["00-database-info", "apple", "pear"]
    for name, entry in zip(names, entries, strict=True):
        size = len(entry.encode())
        index.append(f"{name}\t{_b64(offsets)}\t{_b64(size)}")
        offsets += size
    index.append(f"malus\t{_b64(len(entries[0]))}\t{_b64(len(entries[1].encode()))}")  # synonym: same span
    (tmp_path / "tiny.index").write_text("\n".join(index) + "\n")
    (tmp_path / "tiny.dict.dz").write_bytes(gzip.compress(data))

    parsed = read_entries((tmp_path / "tiny.index").read_text(), data)
    assert [h for h, _ in parsed] == ["apple", "pear"]
    assert parsed[0][1] == "apple\nn 1: fruit with red or yellow or green skin\n2: native Eurasian tree"

    units = list(dictd_units(tmp_path / "tiny.index", tmp_path / "tiny.dict.dz", "lexicon", "dict-x:tiny", 5))
    assert [u.title for u in units] == ["tiny: apple – apple", "tiny: pear – pear"]
    assert all(u.domain == "lexicon" and u.source == "dict-x:tiny" for u in units)


def test_fortune_cookies():
    text = "First cookie\n\twith two lines\n%\n%\nSecond\n\n-- Author\n%\n"
    assert parse_cookies(text) == ["First cookie\nwith two lines", "Second\n-- Author"]


def test_info_nodes():
    text = (
        "This is x.info.\n\x1f\nFile: x.info,  Node: Top,  Next: Intro,  Up: (dir)\n\nTitle\n*****\n\n"
        "Body text here.\n\n* Menu:\n\n* Intro:: The start.\n\x1f\n"
        "File: x.info,  Node: Concept Index,  Prev: Top\n\n* entry: Top. (line 6)\n"
        "\x1f\nTag Table:\nNode: Top\x7f40\n\x1f\nEnd Tag Table\n"
    )
    assert parse_info(text) == [("Top", ["Title", "Body text here."])]


def test_html_keeps_main_and_drops_navigation():
    html = """<html><head><title>Page — Docs</title><style>p{}</style></head><body>
    <div class="related" role="navigation"><a href="x">Next</a></div>
    <div role="main"><h1>Heading<a class="headerlink" href="#h">¶</a></h1>
    <p>First   paragraph
    text.</p><pre>code  line 1
  indented</pre><ul><li>item one</li><li>item two</li></ul></div>
    <div class="footer">© 2024</div></body></html>"""
    page = parse_html(html, sphinx_main)
    assert page.title == "Heading"
    texts = [b.text for b in page.blocks]
    assert texts == ["Heading", "First paragraph text.", "code  line 1\n  indented", "item one", "item two"]
    assert page.blocks[0].level == 1


def test_bible_output_parser():
    out = "\nGenesis 1\n\n  1 In the beginning.\n  2 And the earth was\nwithout form.\n\n1 Kings 2\n\n  1 Now.\n"
    assert parse_bible_output(out) == [
        ("Genesis 1", ["1 In the beginning.", "2 And the earth was without form."]),
        ("1 Kings 2", ["1 Now."]),
    ]


def test_zcom4_blocks_and_osis():
    block = '<chapter osisID="Gen.1" sID="Gen.1"/><title type="x-s2">Chapter 1</title> Text &amp; more.'
    packed = zlib.compress(block.encode())
    bzs = struct.pack("<III", 0, len(packed), len(block))
    assert read_zcom4_blocks(bzs, packed) == [block]
    assert osis_paragraphs(block) == ["Chapter 1", "Text & more."]


def _xdr_str_vector(values: list[str]) -> bytes:
    body = struct.pack(">ii", 16, len(values))
    for v in values:
        raw = v.encode()
        body += struct.pack(">ii", 9 | (1 << 15), len(raw)) + raw  # CHARSXP, UTF-8 flag
    return b"X\n" + struct.pack(">iiii", 3, 0x040201, 0x030500, 5) + b"UTF-8" + body


def test_r_unserialize_and_chapters():
    lines = ["EMMA", "", "Chapter 1", "It was a truth", "widely known.", "", "CHAPTER II", "", "More."]
    assert unserialize(_xdr_str_vector(lines)) == lines
    units = list(novel_units(lines, "literature", "s", "Emma"))
    assert [(u.title, u.paragraphs) for u in units] == [
        ("Emma: front matter", ["EMMA"]),
        ("Emma: Chapter 1", ["It was a truth widely known."]),
        ("Emma: CHAPTER II", ["More."]),
    ]


def test_missing_package_message_names_apt_command(tmp_path):
    with pytest.raises(
        MissingSourceError, match=r"(?s)dict-wn.*apt-get install -y --no-install-recommends dict-wn"
    ):
        locate("/usr/share/dictd/wn.index", "dict-wn", roots=(tmp_path,))
    err = MissingSourceError.combine(
        [MissingSourceError("linux-doc-6.1", "/x"), MissingSourceError("dict-wn", "/y")]
    )
    assert "apt-get download linux-doc-6.1" in str(err) and err.packages == ["dict-wn", "linux-doc-6.1"]


# --- the committed corpus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drops() -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(DEMO_DATA / name) for name in DROP_FILES}


def test_committed_corpus_shape(drops):
    corpus = pl.concat(list(drops.values()))
    assert all(frame.columns == [ID, TEXT, SOURCE, TITLE, DOMAIN] for frame in drops.values())
    assert corpus.height >= 10_000
    assert corpus[DOMAIN].n_unique() >= 10
    assert corpus[ID].n_unique() == corpus.height  # unique across drops
    assert corpus[TEXT].n_unique() == corpus.height
    assert corpus.select(pl.col(TEXT).str.strip_chars().str.len_chars().min()).item() > 0
    assert corpus.null_count().sum_horizontal().item() == 0
    domains = set(corpus[DOMAIN].unique())
    assert all(set(frame[DOMAIN].unique()) == domains for frame in drops.values())
    assert drops[DROP_FILES[0]].height > drops[DROP_FILES[1]].height
    units = [set(frame.select(SOURCE, TITLE).iter_rows()) for frame in drops.values()]
    assert not units[0] & units[1]  # a page/chapter never straddles the drops


def test_committed_corpus_size_and_files():
    total = sum((DEMO_DATA / name).stat().st_size for name in DROP_FILES)
    assert total <= 20 * 1024 * 1024
    assert (DEMO_DATA / "NOTICE").read_text().count("\n") > 10
    assert "drop-0001.parquet" in (DEMO_DATA / "README.md").read_text()


def test_committed_ids_match_text(drops):
    sample = pl.concat(list(drops.values())).head(200)
    for row in sample.iter_rows(named=True):
        assert row[ID] == doc_id(row[DOMAIN], row[TEXT])
        assert 100 <= word_count(row[TEXT]) <= 1000
