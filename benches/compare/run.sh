#!/usr/bin/env bash
# Side-by-side: empi dedup vs Splink (DuckDB backend) on the same generated file.
#
#   benches/compare/run.sh [PERSONS ...]      default: 50000 (about 100k records)
#
# For each size: generates `empi synth --persons N --seed 7` into target/compare/,
# runs both tools under /usr/bin/time -v, scores both clusterings with the same
# pairwise measures (quality.py), and prints precision, recall, F1, false-merge rate,
# wall time and peak RSS side by side. Splink and DuckDB are installed from PyPI into a
# venv under target/ on first use. SPLINK_THRESHOLD sets Splink's clustering match
# probability (default 0.999; empi links at its model's upper threshold, p ≈ 0.996).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$root/target/compare"
venv="$root/target/splink-venv"
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import splink, duckdb" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet splink duckdb
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }

(cd "$root" && cargo build --release --quiet --bin empi)
empi="$root/target/release/empi"

# Runs a command under /usr/bin/time -v; prints "wall_seconds peak_rss_mib".
measure() {
    local log="$1"; shift
    /usr/bin/time -v "$@" 2> "$log" >/dev/null || { cat "$log"; return 1; }
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; wall = s }
        /Maximum resident set size/ { rss = $2 / 1024 }
        END { printf "%.2f %.0f\n", wall, rss }' "$log"
}

row() { # tool wall rss quality_json
    python3 - "$@" <<'PY'
import json, sys
tool, wall, rss, q = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
print(f"{tool:<8} {q['precision']:>9.5f} {q['recall']:>9.5f} {q['f1']:>9.5f} "
      f"{100 * q['false_merge_rate']:>10.4f}% {wall:>9.2f} {rss:>10.0f}")
PY
}

for persons in "${@:-50000}"; do
    data="$work/p$persons-s7"
    if [ ! -f "$data/truth.csv" ]; then
        "$empi" synth --persons "$persons" --seed 7 --out "$data" 2>/dev/null
    fi
    records=$(($(wc -l < "$data/records.csv") - 1))

    read -r e_wall e_rss < <(measure "$work/empi-$persons.time" \
        "$empi" dedup --quiet --force --input "$data/records.csv" --output "$work/empi-$persons.csv" \
        --report "$work/empi-$persons.json")
    e_q=$(python3 "$here/quality.py" "$work/empi-$persons.csv" "$data/truth.csv")

    read -r s_wall s_rss < <(measure "$work/splink-$persons.time" \
        "$venv/bin/python" "$here/splink_dedup.py" "$data/records.csv" "$work/splink-$persons.csv" \
        --threshold "${SPLINK_THRESHOLD:-0.999}")
    s_q=$(python3 "$here/quality.py" "$work/splink-$persons.csv" "$data/truth.csv")

    echo
    echo "$records records ($persons persons, seed 7), $(nproc) cores"
    printf "%-8s %9s %9s %9s %11s %9s %10s\n" tool precision recall f1 false-merge wall_s peak_MiB
    row empi "$e_wall" "$e_rss" "$e_q"
    row splink "$s_wall" "$s_rss" "$s_q"
done
