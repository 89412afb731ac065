"""Raw data contract, Great Expectations suites built from it, and ingest (validate, quarantine, pseudonymise).

Entry points: ``expectations.ingest.ingest_delivery`` and ``upstream ingest`` (``expectations.cli``).
"""
