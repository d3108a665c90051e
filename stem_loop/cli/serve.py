"""``stem-loop serve``: serve the embedded catalog for browsing until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading

from ._common import CommandError, add_data_option, add_json_option, emit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the embedded Tiled catalog (web UI and Python client)",
        description="Serve the embedded Tiled catalog of a data directory for browsing with "
        "the web UI or tiled.client.from_uri, until Ctrl-C. Writes need the API key kept "
        "in DIR/api_key (or $TILED_API_KEY).",
    )
    add_data_option(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface (default: {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any)"
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def _stop_on_sigterm() -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def run(args: argparse.Namespace) -> int:
    """Start the server, print how to connect, block until interrupted."""
    from stem_loop.storage import CatalogBusyError, open_catalog

    try:
        catalog = open_catalog(args.data, host=args.host, port=args.port, embedded=True, join=False)
    except CatalogBusyError as err:
        raise CommandError(f"{err}; browse it there, or stop that process first") from None
    except (RuntimeError, OSError) as err:
        raise CommandError(str(err)) from None
    server = catalog.server
    text = "\n".join(
        [
            f"Serving {catalog.data_dir} at {server.base_url}  (Ctrl-C to stop)",
            f"  web UI:  {server.web_ui_url}",
            "  Python:",
            *(f"    {line}" for line in catalog.python_snippet().splitlines()),
            f"  API key: {catalog.layout.api_key_file} (or $TILED_API_KEY)",
        ]
    )
    result = {
        "uri": catalog.uri,
        "runs_uri": catalog.runs_uri,
        "web_ui": server.web_ui_url,
        "data_dir": str(catalog.data_dir),
        "runs": len(catalog.client),
    }
    _stop_on_sigterm()
    try:
        emit(result, text, as_json=args.json)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        catalog.close()
    return 0
