#!/usr/bin/env python3
"""Parse a Prometheus text-format file with the reference Python client's parser
(prometheus_client.parser) and print its samples as JSON, one object per sample:
{"family", "type", "name", "labels", "value"}. Exits 1 with the parser's error on a
malformed file, 3 when prometheus_client is not installed.

    python3 tests/metrics/parse.py FILE
"""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("prometheus_client is not installed: python3 -m venv V && V/bin/pip install "
          "prometheus_client, then set GTR_PYTHON=V/bin/python", file=sys.stderr)
    sys.exit(3)

text = open(sys.argv[1], encoding="utf-8").read()
out = []
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
except Exception as e:  # the parser raises ValueError and friends on bad input
    print(f"not valid Prometheus text format: {e}", file=sys.stderr)
    sys.exit(1)
json.dump(out, sys.stdout)
