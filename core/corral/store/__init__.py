"""The library store (SQLite)."""

from corral.store.db import SCHEMA_VERSION, Store, StoreError, new_id

__all__ = ["SCHEMA_VERSION", "Store", "StoreError", "new_id"]
