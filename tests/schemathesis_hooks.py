"""Schemathesis hooks of tests/test_openapi_contract.py (loaded through SCHEMATHESIS_HOOKS).

Cursors are signed (scaivault.pagination): no generator can make a valid one, and any other value is
rightly `400 invalid_cursor`, so generated cursors are dropped before every call, in every phase (the
coverage phase applies no `map_query` hook; `before_call` runs for all of them, and schemathesis
re-validates the case afterwards, so a case whose only invalid part was the cursor counts as valid).
tests/test_conformance_pagination.py covers cursors (paging, tampering, another listing's cursor).
"""
import schemathesis

SIGNED = ("cursor", "partner_cursor")


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.query:
        for name in SIGNED:
            case.query.pop(name, None)
