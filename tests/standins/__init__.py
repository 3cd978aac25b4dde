"""Stand-ins for the shops and providers Encore talks to: real HTTP servers on
127.0.0.1 that enforce each party's documented contract (types, required fields,
limits, auth, error codes, rate limits) and offer inspection helpers to tests."""
