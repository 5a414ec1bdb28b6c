"""Raters' model files, verified before use: a sha256 pin, and the layout of a fastText model read to its end.

fastText reads a truncated model without an error (its stream reads fail silently and leave zeros): a model
cut to half its bytes rates every document the same, one cut to a few bytes fails with `min() arg is an empty
sequence` or `std::bad_alloc`, naming no file. `check_fasttext_file` walks the format (fastText's
FastText::saveModel: header, Args, Dictionary, input matrix, output matrix) and refuses a file whose size is
not the size its own header describes.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from pathlib import Path

from climb_dagster.core.common.errors import ClimbInputError

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSIONS = (11, 12)
ARGS_BYTES = 12 * 4 + 8  # 12 int32 fields and the double `t`
KSUB = 256  # centroids per sub-quantizer (fastText's ProductQuantizer)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str, source: str) -> None:
    """Raise naming `source` when the file's sha256 is not the pinned one."""
    got = file_sha256(path)
    if got != expected.lower():
        raise ClimbInputError(
            f"{source}: sha256 {got} is not the pinned {expected}: the file changed or was damaged on the way "
            "(an interrupted upload); copy it again, or pin the new file's sha256"
        )


class _Reader:
    def __init__(self, data: mmap.mmap, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int, what: str) -> int:
        """Step over `n` bytes; return where they start."""
        if n < 0 or self.pos + n > len(self.data):
            raise ClimbInputError(
                f"{self.source} is not a complete fastText model: it ends at byte {len(self.data)} inside {what} "
                f"(which needs bytes {self.pos}..{self.pos + n}); a truncated copy? copy the file again"
            )
        self.pos += n
        return self.pos - n

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack_from("<" + fmt, self.data, self.take(struct.calcsize("<" + fmt), what))

    def skip_string(self, what: str) -> None:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            self.take(len(self.data) - self.pos + 1, what)
        self.pos = end + 1

    def matrix(self, quantized: bool, what: str) -> tuple[int, int]:
        if not quantized:
            m, n = self.unpack("qq", f"the {what} matrix header")
            self.take(4 * m * n, f"the {what} matrix ({m} x {n} floats)")
            return m, n
        qnorm, m, n, codesize = self.unpack("?qqi", f"the quantized {what} matrix header")
        self.take(codesize, f"the {what} codes")
        self.product_quantizer(what)
        if qnorm:
            self.take(m, f"the {what} norm codes")
            self.product_quantizer(f"{what} norms")
        return m, n

    def product_quantizer(self, what: str) -> None:
        dim, _, _, _ = self.unpack("iiii", f"the {what} quantizer")
        self.take(4 * dim * KSUB, f"the {what} centroids")


def check_fasttext_file(path: str | Path, source: str | None = None) -> None:
    """Raise ClimbInputError naming the file (or `source`) unless it is a whole fastText model with labels."""
    p = Path(path)
    size = p.stat().st_size
    name = source or str(p)
    if size == 0:
        raise ClimbInputError(f"{name} is empty, not a fastText model")
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        r = _Reader(data, name)
        magic, version = r.unpack("ii", "the file header")
        if magic != FASTTEXT_MAGIC or version not in FASTTEXT_VERSIONS:
            raise ClimbInputError(f"{name} is not a fastText model (magic {magic}, version {version})")
        r.take(ARGS_BYTES, "the training arguments")
        n_entries, n_words, n_labels, _, n_pruned = r.unpack("iiiqq", "the dictionary header")
        if n_entries != n_words + n_labels or min(n_words, n_labels) < 0:
            raise ClimbInputError(f"{name} is not a fastText model (its dictionary header is inconsistent)")
        for _ in range(n_entries):
            r.skip_string("the dictionary")
            r.take(9, "the dictionary")  # int64 count, int8 type
        r.take(8 * max(n_pruned, 0), "the pruned-word index")  # -1: not pruned
        (quantized,) = r.unpack("?", "the input matrix flag")
        r.matrix(quantized, "input")
        (quantized_out,) = r.unpack("?", "the output matrix flag")
        rows, _ = r.matrix(quantized and quantized_out, "output")
        end = r.pos
    if end != size:
        raise ClimbInputError(
            f"{name}: {size - end} bytes after the end of the fastText model; not one model file"
        )
    if n_labels < 1 or rows < 1:
        raise ClimbInputError(
            f"{name} is a fastText model without labels, not a classifier (train_supervised)"
        )
