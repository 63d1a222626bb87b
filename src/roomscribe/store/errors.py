"""What goes wrong with the store, in two kinds a caller treats differently.

`StoreError` is the store refusing: it cannot be opened, the database URL is wrong, a record
names a meeting that does not exist. `StoreUnavailableError` is the database not answering
(down, unreachable, locked past the busy timeout): the same call may well succeed later, so
writers keep what they could not store and try again.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened, or refuses a call (a bad URL, a missing meeting)."""


class StoreUnavailableError(StoreError):
    """A read or write failed because the database is down, unreachable or too busy."""
