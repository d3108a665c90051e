"""Where runs are recorded: an embedded (or existing) Tiled server and the writer wiring.

>>> from stem_loop.storage import open_catalog, subscribe_writer
>>> with open_catalog() as catalog:           # embedded server under $STEM_LOOP_DATA
...     subscribe_writer(RE, catalog)
...     RE(plan)
...     catalog.client[-1]                    # the run just recorded
"""

from ._api_key import API_KEY_ENV, load_or_create_api_key
from ._catalog import RUNS_KEY, URI_ENV, Catalog, open_catalog
from ._errors import CatalogBusyError, TiledAuthError, TiledUnreachableError
from ._layout import DATA_ENV, DataLayout, resolve_data_dir
from ._replay import pending_backups, replay
from ._server import EmbeddedTiledServer, advertised_server
from ._writer import SafeTiledWriter, make_writer, subscribe_writer

__all__ = [
    "API_KEY_ENV",
    "DATA_ENV",
    "RUNS_KEY",
    "URI_ENV",
    "Catalog",
    "CatalogBusyError",
    "DataLayout",
    "EmbeddedTiledServer",
    "SafeTiledWriter",
    "TiledAuthError",
    "TiledUnreachableError",
    "advertised_server",
    "load_or_create_api_key",
    "make_writer",
    "open_catalog",
    "pending_backups",
    "replay",
    "resolve_data_dir",
    "subscribe_writer",
]
