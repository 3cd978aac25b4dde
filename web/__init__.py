"""`encore serve`: the shop-facing HTTP service (SPEC section 6).

A thin edge over the same services the command line uses: intake (store, then
enqueue), redemption, the opt-out path, and read-only reports for metrics and the
dashboard. Importing this package pulls in nothing; `web.app` needs FastAPI.
"""
