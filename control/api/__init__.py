"""The HTTP API: the app factory, its resources, the edge where a request is read, and the shapes.

`app` wires each resource to the collaborators it uses; `resources` are thin responders; `edge`
reads bearer, bodies and the request's source into plain data; `schemas` (request bodies),
`answers` and `views` (answer shapes), `openapi` and `apidoc` (the spec and its Markdown) are
pure; `metrics` is the Prometheus exposition. May import `control.live` and below, never the store.
"""
