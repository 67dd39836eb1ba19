"""Process start: the control plane as gunicorn with uvicorn workers.

`process` prepares the store once (migrations, the admin token, file modes) and runs gunicorn;
`connections` is the uvicorn worker with its limits on slow and numerous clients. May import the
HTTP layer (`control.api`) and below; only `control.cli` imports it.
"""
