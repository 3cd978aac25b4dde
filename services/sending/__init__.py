"""The sender in parts; `services.sender` puts them together into the batch API.

- `claim`: claiming rows under a fresh token, the `Claim` that knows which rows are
  still this worker's (renewed and verified every lease/3), and its `LeaseKeeper`;
- `fenced`: the SQL of a fenced result write (PostgreSQL and SQLite), for one row or
  a group of rows;
- `group_commit`: the `GroupWriter`, the batch's one connection, which group-commits
  results and waits out a database outage while the lease holds;
- `prepare`: decide and render each claimed delivery (`Outgoing`), and the columns an
  attempt's outcome writes;
- `loop`: the concurrent send loop (threads per channel, rate-limit waits, and per
  item: fence, window, send, record).

Dependencies point one way: loop → claim → (prepare, group_commit) → fenced.
"""
