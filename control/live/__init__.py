"""What each worker keeps alive in memory: the runtime and its collaborators.

`runtime` (thread pools, the sweeper, start and stop), `auth` (who a bearer is), `heartbeats` (the
buffer written in batches), `watch` (the revision feed that wakes long-polls and streams),
`membership` (the netmap cache every answer is spliced from), `outage` (logging an outage once).
Calls the registry for every change; may import `control.registry` and below, never the store.
"""
