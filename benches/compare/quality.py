"""Pairwise precision, recall, F1 and false-merge rate of a clustering against ground
truth, computed as empi's `eval` computes them (docs/DESIGN.md, "Measures of quality").

usage: quality.py CLUSTERS_CSV TRUTH_CSV   (clusters: source,local_id,cluster_id)
prints one JSON object.
"""

import csv
import json
import sys
from collections import Counter


def choose2(n):
    return n * (n - 1) // 2


def main(clusters_path, truth_path):
    truth = {}
    with open(truth_path, newline="") as f:
        for row in csv.DictReader(f):
            truth[(row["source"], row["local_id"])] = row["person_id"]
    cell, by_cluster, by_label = Counter(), Counter(), Counter()
    labels_per_cluster = {}
    seen = set()
    with open(clusters_path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["source"], row["local_id"])
            seen.add(key)
            c, l = "c" + row["cluster_id"], truth.get(key, "missing:" + "/".join(key))
            cell[(c, l)] += 1
            by_cluster[c] += 1
            by_label[l] += 1
    # Records the tool dropped (if any) count as singletons.
    for key, l in truth.items():
        if key not in seen:
            c = "dropped:" + "/".join(key)
            cell[(c, l)] += 1
            by_cluster[c] += 1
            by_label[l] += 1
    for (c, l) in cell:
        labels_per_cluster.setdefault(c, set()).add(l)
    tp = sum(choose2(n) for n in cell.values())
    predicted = sum(choose2(n) for n in by_cluster.values())
    actual = sum(choose2(n) for n in by_label.values())
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    merged = sum(1 for s in labels_per_cluster.values() if len(s) > 1)
    print(json.dumps({
        "precision": p,
        "recall": r,
        "f1": f1,
        "false_merge_rate": merged / max(1, len(by_cluster)),
        "clusters": len(by_cluster),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
