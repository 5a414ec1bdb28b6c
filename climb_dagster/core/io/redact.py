"""Credentials never leave the process in text: one redaction for every log message, metadata entry, error
text and MLflow tag/param, and a refusal of URLs that embed credentials where they configure storage."""

from __future__ import annotations

import re
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError

MASK = "***"
# scheme://user:password@host or scheme://token@host: everything between '//' and the last '@' of the
# authority (a password may itself contain '@').
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"<>]*@)")
# Query parameters that carry secrets (presigned S3 URLs, token-authenticated endpoints).
_SECRET_PARAM = re.compile(
    r"(?i)(?P<name>[?&;](?:password|passwd|pwd|secret|client_secret|token|access_token|auth|api[_-]?key|"
    r"key|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)(?P<value>[^&;\s'\"<>]+)"
)


def redact(text: Any) -> str:
    """`text` as a string with URL credentials (user-info, secret query parameters) replaced by ***."""
    text = str(text)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}", text)


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples; other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def has_credentials(url: str) -> bool:
    return redact(url) != str(url)


def refuse_credentials(url: str, what: str = "storage URL") -> str:
    """Return `url`, or raise naming the setting (with the secret masked) when it embeds credentials."""
    if has_credentials(url):
        raise ClimbInputError(
            f"{what} {redact(url)!r} embeds credentials; remove them from the URL and give them through the "
            "environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an AWS profile or the instance role)"
        )
    return url
