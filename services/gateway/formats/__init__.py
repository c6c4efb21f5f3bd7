"""Alert formats the gateway accepts: one module per source, each a model and `to_drafts`.

A format module owns its payload model (what the OpenAPI page documents and
FastAPI validates) and maps a valid payload onto `AlertDraft`s; the rules that
must not differ between sources (service, fingerprint, ids, key) live in
`services.gateway.normalise`. Adding a source touches one new module here, one
route in `api.py` and one test file.
"""
