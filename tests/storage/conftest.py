"""Storage-test fixtures."""

from __future__ import annotations

import pytest

from stem_loop.storage import API_KEY_ENV, URI_ENV


@pytest.fixture
def embedded_only(monkeypatch):
    """Clear the external-server variables so ``open_catalog`` starts an embedded server."""
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
