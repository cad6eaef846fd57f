"""Serve a trained run over HTTP: ``labelcon serve RUN``.

:mod:`labelcon.serve.app` holds the routes, :mod:`labelcon.serve.guard` the middleware
every request passes (versions, keys, limits, metrics), :mod:`labelcon.serve.errors` the
error answers, :mod:`labelcon.serve.keys` the API keys, :mod:`labelcon.serve.versions` the
switch to newly published model versions and :mod:`labelcon.serve.process` the server
process (``--workers`` included).
"""

from labelcon.serve.app import create_app, load_served
from labelcon.serve.guard import VERSION_HEADER
from labelcon.serve.keys import ENV_KEY, ApiKeyError, ApiKeys, read_api_keys
from labelcon.serve.process import ENV_SPEC, app_from_environment, run

__all__ = [
    "ENV_KEY",
    "ENV_SPEC",
    "VERSION_HEADER",
    "ApiKeyError",
    "ApiKeys",
    "app_from_environment",
    "create_app",
    "load_served",
    "read_api_keys",
    "run",
]
