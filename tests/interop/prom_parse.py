#!/usr/bin/env python3
"""Parses a Prometheus text exposition from stdin with prometheus_client's own parser (the
reference Python implementation, independent of readyloop) and prints one line per family:
`NAME TYPE SAMPLES`. A parse error is an exception and a non-zero exit.

Used by tests/metrics.rs. Needs `pip install prometheus_client` (.ci/run installs it)."""

import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
for family in text_string_to_metric_families(text):
    # The parser names a counter family without its `_total`; print the name as exposed.
    name = family.name + "_total" if family.type == "counter" else family.name
    print(name, family.type, len(family.samples))
