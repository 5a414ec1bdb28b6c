"""Issue 15, item 3: credentials in URLs never reach the event log, metadata, error text or MLflow.

Proves: one `redact` masks user-info and secret query parameters; storage, landing and target URLs that
embed credentials are refused with a message naming the setting (secret masked); a password in
MLFLOW_TRACKING_URI never appears in the run's event log although every tracking call fails.
"""

from __future__ import annotations

import pytest
from dagster._serdes import serialize_value

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.io.redact import redact, redact_value
from climb_dagster.resources.landing import LandingZone
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster_tests.reliability.helpers import CANARY, local_resources, materialize_in


@pytest.mark.parametrize(
    "text",
    [
        f"http://bob:{CANARY}@mlflow:5000/api",
        f"MLflow at 'https://bob:{CANARY}@host/' unavailable",
        f"s3://AKIAX:{CANARY}@bucket/prefix",
        f"postgresql://dagster:{CANARY}@db:5432/dagster",
        f"https://bucket.s3/x.parquet?X-Amz-Credential={CANARY}&X-Amz-Signature={CANARY}",
        f"https://host/api?token={CANARY}",
    ],
)
def test_redact_masks_every_credential_form(text: str):
    out = redact(text)
    assert CANARY not in out and "***" in out
    assert CANARY not in str(redact_value({"a": [text, (text,)], text: 1}))


def test_redact_leaves_plain_urls_alone():
    for text in ("s3://bucket/prefix", "sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000", "/a/b@c"):
        assert redact(text) == text


@pytest.mark.parametrize("setting", ["CLIMB_STORAGE_URL", "CLIMB_LANDING_URL", "CLIMB_S3_ENDPOINT_URL"])
def test_credentials_in_storage_or_landing_url_refused_by_name(monkeypatch: pytest.MonkeyPatch, setting: str):
    from climb_dagster.deployments import build_resources

    monkeypatch.setenv("CLIMB_DEPLOYMENT", "production")
    monkeypatch.setenv("CLIMB_STORAGE_URL", "s3://bucket/climb")
    monkeypatch.setenv("CLIMB_LANDING_URL", "s3://bucket/landing")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv(setting, f"{'http' if 'ENDPOINT' in setting else 's3'}://AKIAX:{CANARY}@bucket/x")
    with pytest.raises(ClimbInputError, match=setting) as info:
        build_resources()
    assert CANARY not in str(info.value) and "embeds credentials" in str(info.value)


def test_credentials_in_resource_urls_refused_where_the_path_is_made():
    url = f"s3://AKIAX:{CANARY}@bucket/x"
    for make in (
        lambda: ClimbStorage(base_path=url).root(),
        lambda: LandingZone(base=url).root(),
        lambda: storage.make_path(url, what="target evaluation set"),
    ):
        with pytest.raises(ClimbInputError, match="embeds credentials") as info:
            make()
        assert CANARY not in str(info.value)


def test_mlflow_password_never_reaches_the_event_log(tiny_corpus: dict):
    """The experiment asset logs an "MLflow unavailable" warning; the URI's password must be masked."""
    resources = local_resources(tiny_corpus["home"], tracking_uri=f"http://climb:{CANARY}@127.0.0.1:9")
    result = materialize_in(tiny_corpus, ["experiment"], "redacted", resources=resources)
    assert result.success
    logs = [serialize_value(r) for r in tiny_corpus["instance"].all_logs(result.run_id)]
    warnings = [t for t in logs if "unavailable" in t]
    assert warnings, "the MLflow-unavailable warning was expected"
    assert any("http://***@127.0.0.1:9" in t for t in warnings)
    assert not [t[:200] for t in logs if CANARY in t]
