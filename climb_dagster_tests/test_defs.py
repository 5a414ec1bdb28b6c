import subprocess
import sys

import dagster as dg

from climb_dagster_tests.conftest import REPO_ROOT


def test_definitions_load(climb_home):
    import climb_dagster.definitions as module

    defs = module.defs
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "raw_documents" in keys


def test_dagster_cli_validates(climb_home):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "climb_dagster.definitions"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_definitions_import_is_light(climb_home):
    # Heavy libraries are imported lazily, so the code server starts fast.
    code = (
        "import sys, climb_dagster.definitions; "
        "heavy = [m for m in ('torch', 'faiss', 'transformers', 'lightgbm', 'sentence_transformers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported at definitions load: {out.stdout}"
