"""Adapters to the shops' own APIs: make Encore's codes exist at their checkout (SPEC rule 15).

Imports only the pure domain (`coupons`), the standard library and `requests`."""
