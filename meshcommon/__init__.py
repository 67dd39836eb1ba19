"""What every meshvpn part shares, in two layers: `contract` (pure: the wire format, keys,
endpoints and addresses, timings, version) beneath `plumbing` (logging, files, the local-API client,
the backoff, import trimming). control/, agent/ and chat/ may import this package; it imports none
of them (checked by import contracts).
"""
