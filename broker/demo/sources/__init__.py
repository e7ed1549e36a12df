"""The demo's source services: a FHIR R4 patient record and a social-care REST API.

Both are real FastAPI apps with synthetic data, built by `create_app(issuer, audience,
jwks_url)`; both admit only the broker's source tokens (`connectors.guard.SourceGuard`) and
return only the fields a token allows. Serve one with
`python -m broker.demo.sources.fhir --port 8001 --broker http://127.0.0.1:8000`.
"""
