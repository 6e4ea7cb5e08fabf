"""Schemathesis hooks of tests/test_openapi_contract.py (loaded through SCHEMATHESIS_HOOKS).

Cursors are signed (scaivault.pagination): no generator can make a valid one, and any other value is
rightly `400 invalid_cursor`, so generated cursors are dropped; tests/test_conformance_pagination.py
covers cursors (paging, tampering, another listing's cursor).
"""
import schemathesis


@schemathesis.hook
def map_query(context, query):
    if query:
        for name in ("cursor", "partner_cursor"):
            query.pop(name, None)
    return query
