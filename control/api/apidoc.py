"""Markdown reference of the HTTP API, rendered from the OpenAPI spec (pure).

Owns the layout of docs/api.md; the content is the spec's (`openapi.py`).
"""
from __future__ import annotations

import json

INTRO = """# meshvpn control plane HTTP API

Generated from `GET /v1/openapi.json` by `scripts/gen-api-doc`; a test fails when this
file and the spec disagree. All bodies are JSON. Errors are `{"error": CODE, "message": TEXT}`
with a 4xx status (507 when the mesh prefix is exhausted). Tokens go in
`Authorization: Bearer TOKEN`: the admin token (`admin.token` in the state directory), a
join token (`mvj_...`, from `meshctl token create`) or a node token (`mvn_...`, returned
once by `POST /v1/register`).
"""

SECURITY = {"adminToken": "admin token", "joinToken": "join token", "nodeToken": "node token"}


def schema_name(schema: dict) -> str | None:
    return schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else None


def answer_schema(answer: dict) -> str:
    """` (`Name`)` for a JSON answer whose schema is a named one, other than the error body."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    name = schema_name(schema)
    return f" (`{name}`)" if name and name != "Error" else ""


def render(spec: dict) -> str:
    lines = [INTRO]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            lines.append(f"## `{method.upper()} {path}`\n")
            lines.append(op["summary"] + ".\n")
            if op.get("description"):
                lines.append(op["description"] + "\n")
            auth = [SECURITY[name] for option in op.get("security", []) for name in option]
            lines.append(f"- Auth: {' or '.join(auth) if auth else 'none'}")
            for param in op.get("parameters", []):
                about = param.get("description", param["schema"]["type"])
                lines.append(f"- `{param['name']}` ({param['in']}): {about}")
            if "requestBody" in op:
                body = op["requestBody"]
                note = f" {body['description']}" if body.get("description") else ""
                lines.append(f"- Body: `{schema_name(body['content']['application/json']['schema'])}` (below).{note}")
            codes = ", ".join(f"{code} {answer['description']}{answer_schema(answer)}"
                              for code, answer in op["responses"].items())
            lines.append(f"- Answers: {codes}\n")
    lines.append("## Schemas\n")
    for name, schema in spec["components"]["schemas"].items():
        lines.append(f"### {name}\n\n```json\n{json.dumps(schema, indent=2)}\n```\n")
    return "\n".join(lines)
