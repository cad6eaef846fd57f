"""API keys of ``labelcon serve``: who may call it.

The keys come from ``$LABELCON_API_KEY`` (one key) and ``--api-key-file FILE`` (one key
per line; blank lines and lines starting with ``#`` are skipped). With at least one key,
every route but ``GET /health`` asks for ``Authorization: Bearer <key>``. A key is compared
by its SHA-256 digest against every accepted key's digest with
:func:`hmac.compare_digest`, all of them every time, so the time of an answer tells
nothing about how close a guess came. Keys appear in no message: errors about a key file
name the file and the line, never the line's text.

>>> keys = ApiKeys(["s3cret-key"])
>>> keys.accepts("Bearer s3cret-key"), keys.accepts("Bearer guess"), keys.accepts(None)
(True, False, False)
>>> bool(ApiKeys([]))
False
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

#: The environment variable holding a key.
ENV_KEY = "LABELCON_API_KEY"
#: Routes that answer without a key (a load balancer's health check has none).
OPEN_ROUTES = frozenset({("GET", "/health")})


class ApiKeyError(ValueError):
    """A key file or ``$LABELCON_API_KEY`` that holds no usable key."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The accepted keys, kept as digests; false when there are none (an open server)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the keys themselves
        return f"ApiKeys({len(self)} keys)"

    def accepts(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header's value is ``Bearer <an accepted key>``."""
        scheme, _, key = (authorization or "").partition(" ")
        presented = _digest(key.strip())
        matched = False
        for digest in self._digests:  # no early exit: every key is compared
            matched |= hmac.compare_digest(digest, presented)
        return matched and scheme.lower() == "bearer"


def read_api_keys(key_file: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ) -> ApiKeys:
    """The keys of ``$LABELCON_API_KEY`` (from ``environ``) and of ``key_file``."""
    keys = []
    if ENV_KEY in environ:
        key = environ[ENV_KEY].strip()
        if not key or any(c.isspace() for c in key):
            raise ApiKeyError(
                f"${ENV_KEY} is set but holds {'no key' if not key else 'a key with whitespace in it'}; "
                f"set it to one key, or unset it"
            )
        keys.append(key)
    if key_file is not None:
        keys.extend(_keys_of_file(Path(key_file)))
    return ApiKeys(keys)


def _keys_of_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ApiKeyError(
            f"{path}: cannot read the key file ({type(error).__name__}); check --api-key-file (keyword api_key_file)"
        ) from None
    keys = []
    for number, line in enumerate(lines, start=1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if any(c.isspace() for c in key):
            raise ApiKeyError(
                f"{path}, line {number}: expected one key per line, got a line with whitespace "
                "inside it (--api-key-file)"
            )
        keys.append(key)
    if not keys:
        raise ApiKeyError(f"{path}: expected one key per line, got no key (--api-key-file)")
    return keys


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine reaches (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
