"""Serve a trained run over HTTP: ``labelcon serve RUN``.

:mod:`labelcon.serve.app` holds the routes and the process that runs them,
:mod:`labelcon.serve.keys` the API keys, :mod:`labelcon.serve.versions` the switch to
newly published model versions.
"""

from labelcon.serve.app import ENV_SPEC, VERSION_HEADER, app_from_environment, create_app, load_served, run
from labelcon.serve.keys import ENV_KEY, ApiKeyError, ApiKeys, read_api_keys

__all__ = ["ENV_KEY", "ENV_SPEC", "VERSION_HEADER", "ApiKeyError", "ApiKeys", "app_from_environment", "create_app",
           "load_served", "read_api_keys", "run"]
