import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.keys import validate_key


@pytest.mark.parametrize("key", ["drop-0001", "2026_11_26", "exp.a-1", "A"])
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "a/b", "..", "a..b", "../etc", "drop\n1", "drop\x00", "-lead", "x" * 200, "a b"]
)
def test_invalid_keys_are_named(key):
    with pytest.raises(ClimbInputError) as info:
        validate_key(key, "crawl drop")
    assert repr(key) in str(info.value)
