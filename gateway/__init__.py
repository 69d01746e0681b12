"""Parley's REST facade: routes derived from the contracts' ``google.api.http`` annotations,
browser sessions (OIDC or the dev login), the OpenAPI document and the web app's files."""

from ._app import create_app, load_descriptor_set
from ._openapi import build_openapi_document
from ._routes import Route, Router, routes_for
from ._server import GatewayServer
from ._settings import ConfigurationError, GatewaySettings, OidcClientSettings

__all__ = [
    "ConfigurationError",
    "GatewayServer",
    "GatewaySettings",
    "OidcClientSettings",
    "Route",
    "Router",
    "build_openapi_document",
    "create_app",
    "load_descriptor_set",
    "routes_for",
]
