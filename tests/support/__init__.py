"""Helpers the tests share: recorded speech and scoring, the servers and browsers they drive,
and fakes for unit tests of one layer. Fixtures live in the `conftest.py` files."""
