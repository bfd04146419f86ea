#!/usr/bin/env python3
"""A small Python client of the empi gRPC API: match-or-create and the review queue.

It submits a few synthetic records to a running `empi serve` and checks what comes back:

1. a new person                     -> CREATED, a new EUID
2. the same record again            -> the same EUID, `unchanged`
3. a near-duplicate from another source -> LINKED to that EUID, or REVIEW with a task
4. a clearly different person       -> CREATED, another EUID
5. a possible twin (same family name, birth date, address and phone, other given name)
                                    -> not LINKED (a clinical guard rail), usually REVIEW

then reads the open review queue (ListReviewTasks) and the counts (GetStats), and prints a
summary of record keys, EUIDs, decisions and scores (no demographics). It exits 1 when an
expectation fails and 2 when the server cannot be reached.

    python empi_client.py [ADDRESS]      # or EMPI_ADDR=host:port; default 127.0.0.1:50051

Stubs are generated from proto/ into _generated/ on first use (gen_stubs.sh does the same).
All data is synthetic and random per run, so the script can run again against the same server.
"""

import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join(HERE, "_generated")
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTO_FILE = os.path.join(PROTO_ROOT, "empi", "v1", "empi.proto")


def ensure_stubs():
    """Generates the stubs with grpc_tools when they are missing or older than the proto."""
    stub = os.path.join(GENERATED, "empi", "v1", "empi_pb2.py")
    if os.path.exists(stub) and os.path.getmtime(stub) >= os.path.getmtime(PROTO_FILE):
        return
    import importlib.resources

    from grpc_tools import protoc

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    os.makedirs(GENERATED, exist_ok=True)
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + PROTO_ROOT,
            "-I" + well_known,
            "--python_out=" + GENERATED,
            "--grpc_python_out=" + GENERATED,
            PROTO_FILE,
        ]
    )
    if rc != 0:
        sys.exit(f"error: protoc failed ({rc}) generating stubs from {PROTO_FILE}")


ensure_stubs()
sys.path.insert(0, GENERATED)

import grpc  # noqa: E402

from empi.v1 import empi_pb2 as pb  # noqa: E402
from empi.v1 import empi_pb2_grpc as pb_grpc  # noqa: E402

CALL_TIMEOUT = 10.0  # seconds per RPC

# (usual spelling, a registration-desk misspelling)
GIVEN_NAMES = [
    ("Katharine", "Katherine"),
    ("Jonathan", "Jonathon"),
    ("Stephen", "Stephan"),
    ("Elizabeth", "Elisabeth"),
    ("Michael", "Micheal"),
    ("Rebecca", "Rebekah"),
]
FAMILY_NAMES = ["Thornbury", "Castellanos", "Okafor", "Lindgren", "Marchetti", "Havlicek"]
STREETS = ["Juniper", "Quarry", "Alder", "Wexford", "Bramble", "Tidewater"]


class Run:
    """Collects the checks' outcomes and prints the summary lines."""

    def __init__(self):
        self.failures = []

    def expect(self, ok, what):
        if not ok:
            self.failures.append(what)
            print(f"   ! expected {what}")
        return ok


def decision_name(d):
    return pb.Decision.Name(d).removeprefix("DECISION_")


def make_records(rng, run_id):
    """Synthetic records: a person, a near-duplicate of it, someone else, and a possible twin."""
    (given, misspelt) = rng.choice(GIVEN_NAMES)
    family = rng.choice(FAMILY_NAMES)
    other_given, _ = rng.choice([g for g in GIVEN_NAMES if g[0] != given])
    other_family = rng.choice([f for f in FAMILY_NAMES if f != family])
    dob = f"{rng.randint(1940, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    other_dob = f"{rng.randint(1940, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    national_id = f"7{rng.randint(0, 99_999_999):08d}"
    phone = f"555{rng.randint(0, 9_999_999):07d}"
    number, street = rng.randint(1, 999), rng.choice(STREETS)
    postal = f"{rng.randint(10_000, 99_999)}"

    person = pb.PatientRecord(
        source="py-example-adt",
        local_id=f"PY{run_id}-001",
        given_name=given,
        family_name=family,
        birth_date=dob,
        sex=pb.SEX_FEMALE,
        address=pb.Address(
            lines=[f"{number} {street} Road"], city="Greenford", state="MN", postal_code=postal
        ),
        phones=[phone],
        identifiers=[pb.Identifier(system="national_id", value=national_id)],
    )
    near_duplicate = pb.PatientRecord(
        source="py-example-clinic",
        local_id=f"PY{run_id}-002",
        given_name=misspelt,
        family_name=family,
        birth_date=dob,
        sex=pb.SEX_FEMALE,
        address=pb.Address(lines=[f"{number} {street} Rd"], city="Greenford", postal_code=postal),
        phones=[phone],
        identifiers=[pb.Identifier(system="national_id", value=national_id)],
    )
    other = pb.PatientRecord(
        source="py-example-adt",
        local_id=f"PY{run_id}-003",
        given_name=other_given,
        family_name=other_family,
        birth_date=other_dob,
        sex=pb.SEX_MALE,
        phones=[f"555{rng.randint(0, 9_999_999):07d}"],
        identifiers=[
            pb.Identifier(system="national_id", value=f"8{rng.randint(0, 99_999_999):08d}")
        ],
    )
    # Same family name, birth date, address and phone, another given name, no identifier:
    # a twin or a data-entry error. The clinical guard rail forbids an automatic link.
    twin = pb.PatientRecord(
        source="py-example-clinic",
        local_id=f"PY{run_id}-004",
        given_name=other_given,
        family_name=family,
        birth_date=dob,
        sex=pb.SEX_FEMALE,
        address=pb.Address(
            lines=[f"{number} {street} Road"], city="Greenford", state="MN", postal_code=postal
        ),
        phones=[phone],
    )
    return person, near_duplicate, other, twin


def key_of(rec):
    return f"{rec.source}/{rec.local_id}"


def submit(stub, n, label, rec):
    resp = stub.MatchOrCreate(
        pb.MatchOrCreateRequest(record=rec, actor="python-example"), timeout=CALL_TIMEOUT
    )
    score = ""
    if resp.HasField("score"):
        score = f"  score {resp.score:+.2f}  p={resp.probability:.3f}"
    extra = "  unchanged" if resp.unchanged else ""
    if resp.HasField("review_task_id"):
        extra += f"  task {resp.review_task_id}"
    print(f"{n}. {label:<24} {key_of(rec):<28} -> {decision_name(resp.decision):<8}"
          f" {resp.euid}{score}{extra}")
    return resp


def print_explanation(resp):
    if resp.explanation:
        parts = [f"{e.comparison}={e.level} {e.weight:+.1f}" for e in resp.explanation]
        print("   explanation: " + ", ".join(parts))
    for c in resp.candidates[:3]:
        print(f"   candidate {c.euid}  score {c.score:+.2f}  p={c.probability:.3f}")


def find_open_tasks(stub, task_ids, max_pages=20):
    """Pages through the open review tasks, oldest first.

    Returns the first page's tasks and which of `task_ids` were seen (bounded paging)."""
    first_page, token, found = None, "", set()
    for _ in range(max_pages):
        page = stub.ListReviewTasks(
            pb.ListReviewTasksRequest(
                page_size=100, page_token=token, status=pb.REVIEW_TASK_STATUS_OPEN
            ),
            timeout=CALL_TIMEOUT,
        )
        if first_page is None:
            first_page = list(page.tasks)
        found |= {t.task_id for t in page.tasks if t.task_id in task_ids}
        token = page.next_page_token
        if len(found) == len(set(task_ids)) or not token:
            break
    return first_page or [], found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "address",
        nargs="?",
        default=os.environ.get("EMPI_ADDR", "127.0.0.1:50051"),
        help="host:port of empi serve (default: $EMPI_ADDR or 127.0.0.1:50051)",
    )
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the server")
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.wait)
    except grpc.FutureTimeoutError:
        print(f"error: no empi server answered at {args.address} within {args.wait} s",
              file=sys.stderr)
        return 2
    stub = pb_grpc.EmpiStub(channel)

    run_id = f"{random.SystemRandom().getrandbits(32):08x}"
    rng = random.Random(run_id)
    person, near_duplicate, other, twin = make_records(rng, run_id)
    run = Run()

    try:
        stats = stub.GetStats(pb.GetStatsRequest(), timeout=CALL_TIMEOUT)
        print(f"empi at {args.address}: model {stats.model_version}, {stats.records} records,"
              f" {stats.persons} persons, {stats.open_review_tasks} open review tasks")
        print(f"run {run_id}: synthetic records only\n")

        first = submit(stub, 1, "new person", person)
        run.expect(first.decision == pb.DECISION_CREATED, "a new person to be CREATED")
        run.expect(bool(first.euid), "an EUID for the new person")
        run.expect(not first.unchanged, "the first submission to write something")

        again = submit(stub, 2, "same record again", person)
        run.expect(again.euid == first.euid, "the same EUID for the same record")
        run.expect(again.unchanged, "the repeated record to be reported unchanged")
        run.expect(again.decision == first.decision, "the same decision for the same record")

        near = submit(stub, 3, "near-duplicate", near_duplicate)
        print_explanation(near)
        if near.decision == pb.DECISION_LINKED:
            run.expect(near.euid == first.euid, "a LINKED near-duplicate to join the first EUID")
        elif near.decision == pb.DECISION_REVIEW:
            run.expect(near.HasField("review_task_id"), "a review task id for REVIEW")
            run.expect(any(c.euid == first.euid for c in near.candidates),
                       "the first EUID among the REVIEW candidates")
        else:
            run.expect(False, "the near-duplicate to be LINKED or REVIEW, not "
                       + decision_name(near.decision))

        different = submit(stub, 4, "different person", other)
        run.expect(different.decision == pb.DECISION_CREATED, "a different person to be CREATED")
        run.expect(different.euid not in (first.euid, near.euid),
                   "a different person to get a new EUID")

        maybe_twin = submit(stub, 5, "possible twin", twin)
        print_explanation(maybe_twin)
        run.expect(maybe_twin.decision != pb.DECISION_LINKED,
                   "a possible twin not to be linked automatically")
        run.expect(maybe_twin.euid != first.euid, "a possible twin to get its own EUID")

        stored = stub.GetRecord(
            pb.GetRecordRequest(key=pb.RecordKey(source=person.source, local_id=person.local_id)),
            timeout=CALL_TIMEOUT,
        )
        run.expect(stored.record.euid == first.euid, "GetRecord to return the same EUID")

        review_ids = [r.review_task_id for r in (near, maybe_twin)
                      if r.decision == pb.DECISION_REVIEW]
        tasks, found = find_open_tasks(stub, review_ids)
        stats = stub.GetStats(pb.GetStatsRequest(), timeout=CALL_TIMEOUT)
        print(f"\nreview queue: {stats.open_review_tasks} open; oldest {min(len(tasks), 5)}:")
        for t in tasks[:5]:
            cands = ", ".join(f"{c.euid} ({c.score:+.1f})" for c in t.candidates[:3])
            print(f"   {t.task_id}  {t.record.source}/{t.record.local_id}"
                  f" -> {t.record_euid or '-'}  candidates: {cands or 'none'}")
        for task_id in review_ids:
            run.expect(task_id in found, f"task {task_id} in the open review queue")
            task = stub.GetReviewTask(pb.GetReviewTaskRequest(task_id=task_id),
                                      timeout=CALL_TIMEOUT).task
            print(f"this run's task {task.task_id}: {pb.ReviewTaskStatus.Name(task.status)},"
                  f" record {task.record.source}/{task.record.local_id}")
            for c in task.candidates[:3]:
                levels = ", ".join(f"{e.comparison}={e.level}" for e in c.explanation)
                print(f"   candidate {c.euid}  score {c.score:+.2f}  {levels}")
        print(f"stats: {stats.records} records, {stats.persons} persons,"
              f" {stats.open_review_tasks} open review tasks")
    except grpc.RpcError as e:
        print(f"error: RPC failed: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()

    if run.failures:
        print(f"\nFAILED: {len(run.failures)} expectation(s) not met", file=sys.stderr)
        return 1
    print("\nOK: all expectations met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
