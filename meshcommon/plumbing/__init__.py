"""What every meshvpn process shares that is not the contract: logging (`events`), durable files,
the local-API client of the agent's socket, the backoff, and keeping unused imports out of memory
(`trim_imports`). May import `meshcommon.contract`, never a part.
"""
