"""`formreader watch`: a daemon that turns every file dropped in an inbox folder into rows, exactly once.

ledger     SQLite state (content hash -> status), the committed length of the output file.
sink       durable appends to the CSV/JSONL output, reconciled with the ledger after a crash.
stability  settle detection: a file is taken only once its size and mtime stop changing.
files      which inbox names to take, content hashes, unique destinations, crash-safe moves.
daemon     the loop: discover, settle, claim, prepare, batch, recognize, commit, move.
status     the `--status` report read from the ledger.

The 1,000-file soak (pages/s, resident memory) is tests/soak_watch.py.
"""
