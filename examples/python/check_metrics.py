#!/usr/bin/env python3
"""Reads a running `empi serve --metrics ADDR`'s /metrics with the Prometheus project's own
text-format parser (prometheus_client), after the example client's calls, and checks that
it parses and that the counters moved with those calls. Exits 1 when they did not.

    python check_metrics.py 127.0.0.1:9090
"""

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode("utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # Counter families are named without `_total` by this parser; their samples keep it.
    samples = lambda name: (families.get(name) or families[name + "_total"]).samples
    ok = 0.0
    for s in samples("empi_calls"):
        if s.name == "empi_calls_total" and s.labels == {"operation": "MatchOrCreate", "code": "OK"}:
            ok = s.value
    decided = sum(s.value for s in samples("empi_decisions") if s.name == "empi_decisions_total")
    latency = [s for s in families["empi_call_duration_seconds"].samples
               if s.name.endswith("_count") and s.labels.get("operation") == "MatchOrCreate"]
    checks = [
        (ok >= 5, f"MatchOrCreate OK calls counted ({ok})"),
        (decided == ok, f"every one has a decision ({decided})"),
        (latency and latency[0].value == ok, "and a latency"),
        ("empi_feed_head_sequence" in families, "the change feed's head is shown"),
    ]
    failed = [what for good, what in checks if not good]
    for what in failed:
        print(f"metrics: FAILED: {what}", file=sys.stderr)
    print(f"metrics: {len(families)} families parsed by prometheus_client; {len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9090"))
