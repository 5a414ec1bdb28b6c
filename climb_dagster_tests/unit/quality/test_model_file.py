"""fastText model files read to their end (core/quality/model_file.py): every truncation of a real model is
refused before fastText reads it, a whole model (dense or quantized) passes, and the sha256 pin holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.model_file import check_fasttext_file, check_sha256, file_sha256
from climb_dagster.core.quality.train import MIN_THREADS, train_supervised


def train_fasttext(path: Path, **args):
    return train_supervised(path, 0, thread=MIN_THREADS, **args)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fasttext")
    rng = np.random.default_rng(0)
    good = "library committee budget construction reading debate city spring vote members".split()
    bad = "buy now click win free cash prize deal offer cheap".split()
    lines = [f"__label__{s} " + " ".join(rng.choice(w, 12)) for _ in range(150) for s, w in ((5, good), (1, bad))]
    (tmp / "train.txt").write_text("\n".join(lines) + "\n")
    train_fasttext(tmp / "train.txt", epoch=10, dim=10).save_model(str(tmp / "dense.bin"))
    bigram = train_fasttext(tmp / "train.txt", epoch=10, dim=10, wordNgrams=2, bucket=2000)
    bigram.quantize(input=str(tmp / "train.txt"), retrain=False, qnorm=True, dsub=2)
    bigram.save_model(str(tmp / "quantized.ftz"))
    return {"dense": tmp / "dense.bin", "quantized": tmp / "quantized.ftz"}


@pytest.mark.parametrize("kind", ["dense", "quantized"])
def test_every_truncation_is_refused_and_the_whole_model_passes(models, tmp_path: Path, kind: str):
    data = models[kind].read_bytes()
    check_fasttext_file(models[kind])
    cut = tmp_path / "cut.bin"
    for n in [*range(0, 200), *range(200, len(data), max(1, len(data) // 300)), len(data) - 1]:
        cut.write_bytes(data[:n])
        with pytest.raises(ClimbInputError, match="cut.bin"):
            check_fasttext_file(cut)
    cut.write_bytes(data + b"\0")
    with pytest.raises(ClimbInputError, match="1 bytes after the end of the fastText model"):
        check_fasttext_file(cut)


def test_other_files_are_not_fasttext_models(tmp_path: Path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(ClimbInputError, match="is not a fastText model"):
        check_fasttext_file(junk)


def test_sha256_pin(models):
    digest = file_sha256(models["dense"])
    check_sha256(models["dense"], digest.upper(), "rater")
    with pytest.raises(ClimbInputError, match=f"rater: sha256 {digest} is not the pinned 00"):
        check_sha256(models["dense"], "00" * 32, "rater")
