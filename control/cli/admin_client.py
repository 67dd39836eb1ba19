"""The admin's HTTP client of the control plane, as `meshctl` uses it.

Owns finding the control plane and the admin token (flags or MESHCTL_* variables), TLS
verification, timeouts, and turning a failed request into a one-line exit message whose
API text is made visible (`console.visible`).
"""
from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from control.cli.console import visible
from control.rules import tokens


class Admin:
    def __init__(self, args: argparse.Namespace):
        url = args.control or os.environ.get("MESHCTL_CONTROL")
        token_file = args.admin_token_file or os.environ.get("MESHCTL_ADMIN_TOKEN_FILE")
        if not url or not token_file:
            raise SystemExit("meshctl: give --control URL and --admin-token-file FILE "
                             "(or MESHCTL_CONTROL and MESHCTL_ADMIN_TOKEN_FILE)")
        try:  # as ssh treats a private key: a token file others could read or replace is refused
            token = tokens.read_private(Path(token_file))
        except tokens.UnsafeSecretFile as exc:
            raise SystemExit(f"meshctl: {exc}") from None
        except OSError as exc:
            raise SystemExit(f"meshctl: cannot read admin token: {exc}") from None
        ca = args.ca or os.environ.get("MESHCTL_CA")
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(10.0, read=90.0), verify=verify)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SystemExit(f"meshctl: control plane unreachable: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SystemExit(f"meshctl: {response.status_code}: {visible(message)}")
        return response
