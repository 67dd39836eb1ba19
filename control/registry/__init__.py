"""The one gateway to state: every membership change, each in one database transaction.

`registry` (enrolment, re-registration, removal, renaming, reads), `liveness` (heartbeat batches,
offline sweeps), `challenges` (proof of key possession), `join_tokens`. Takes and returns plain
data (`control.rules.records`); the only layer above the store that reaches it.
"""
