"""Dev-only: the hosts and servers tests and benchmarks run on. Never deployed (not in the wheel).

`lab` builds lab hosts out of network, mount and UTS namespaces (sites, NAT, cuts), `meshlab` runs
agents on them, `control_process` real control planes (gunicorn, SQLite or PostgreSQL, TLS),
`tls_proxy` HAProxy in front of one, `pg` a throwaway PostgreSQL server, `certs` self-signed
certificates, `enrol` registration with a proof of key possession, and `nft` the nftables rules of
the lab that the Ansible lab (roles/meshvpn_lab, through its module_utils) uses too. tests/ and
bench/ import from here; nothing here imports tests/ or bench/.
"""
