"""Errors raised when the catalog cannot be opened."""


class TiledUnreachableError(ConnectionError):
    """No Tiled server answers at the configured URI."""


class TiledAuthError(PermissionError):
    """The Tiled server refused the API key."""


class CatalogBusyError(RuntimeError):
    """Another process already serves this data directory."""
