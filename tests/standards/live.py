#!/usr/bin/env python3
"""Drives a live `empi serve --hl7 ADDR --fhir ADDR` with clients that were not written
against empi: the PyPI `hl7` package's MLLP client and parser for HL7 v2, the standard
library's HTTP client for FHIR, and the `fhir.resources` R4 (4.0.1) models to validate every
FHIR answer.

HL7 v2 (IHE ITI-8, ITI-9, ITI-21): an ADT feed (A04 twice, A08, another domain's A04, A40
and its replay), a PIX query (Q23) found and unknown, a PDQ query (Q22), and a message that
cannot be parsed. Each answer parses, goes back to the sender, echoes MSH-10 in MSA-2, and
has the expected MSA-1 (and QAK-2, ERR); the merge is checked through PIX before and after.

FHIR R4: metadata, Patient/$match, Patient/$ihe-pix, Patient read (the survivor and the
merged EUID), and errors; each answer has the expected status and validates against the
model of its resourceType.

Usage: live.py HL7_ADDR FHIR_ADDR (each HOST:PORT). Prints one line a check that failed,
then "N passed, N failed"; exits 1 when any failed.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import hl7
from hl7.client import MLLPClient
from fhir.resources import get_fhir_model_class

from checks import FAILURES, PASSED, check, field, segments

def hostport(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


# --- HL7 v2 over MLLP ---------------------------------------------------------------------

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


class Mllp:
    """The hl7 package's MLLP client, reading on until the end block: its `send` returns
    what one recv() gave, which may be part of an answer."""

    def __init__(self, addr):
        self.client = MLLPClient(*hostport(addr))
        self.client.socket.settimeout(30)

    def close(self):
        self.client.close()

    def send(self, text):
        """Sends a message (segments joined by CR), returns the answer as text."""
        got = self.client.send_message(text)
        while not got.rstrip(CR).endswith(EB):
            more = self.client.socket.recv(65536)
            if not more:
                break
            got += more
        check(got.startswith(SB) and got.endswith(EB + CR), "answer framed as MLLP")
        return got.strip(SB + EB + CR).decode("utf-8")


def message(*segments):
    return "\r".join(segments) + "\r"


def msh(kind, control_id, sender="ADT_SENDER", facility="GOOD_HEALTH"):
    return f"MSH|^~\\&|{sender}|{facility}|EMPI|CITY_HOSP|20260111080000||{kind}|{control_id}|P|2.5"


def adt(event, structure, control_id, pid, *more):
    return message(
        msh(f"ADT^{event}^{structure}", control_id),
        "EVN||20260111080000",
        pid,
        *more,
    )


def answered(sent, answer, what, msa, kind=None):
    """Checks an answer to `sent` as any sender would; returns it parsed."""
    try:
        parsed = hl7.parse(answer)
    except Exception as e:  # noqa: BLE001 - any parse failure is the finding
        check(False, f"{what}: answer parses ({e})")
        return None
    check(True, f"{what}: answer parses")
    request = hl7.parse(sent)
    check(field(parsed, "MSH", 5) == field(request, "MSH", 3), f"{what}: MSH-5 = MSH-3 sent")
    check(field(parsed, "MSH", 6) == field(request, "MSH", 4), f"{what}: MSH-6 = MSH-4 sent")
    got = field(parsed, "MSA", 1)
    check(got == msa, f"{what}: MSA-1 {got!r}, expected {msa!r}: {answer!r}")
    check(
        field(parsed, "MSA", 2) == field(request, "MSH", 10),
        f"{what}: MSA-2 echoes MSH-10",
    )
    if kind:
        got = str(parsed.segment("MSH")[9])
        check(got == kind, f"{what}: MSH-9 {got!r}, expected {kind!r}")
    check(
        bool(segments(parsed, "ERR")) == (msa != "AA"),
        f"{what}: an ERR exactly when not AA",
    )
    return parsed


MARGARET = (
    "PID|||{id}^^^GOODHEALTH^MR||Okonkwo^Margaret^Adaeze||19610702|F|||"
    "417 Elm Street^^Springfield^MA^01103^USA||(413)555-0142||||||123-45-6789"
)
# A second registration of hers under another MRN: too little in common to link alone.
MAGGIE = "PID|||MRN2^^^GOODHEALTH^MR||Okonkwo^Maggie||1961|F|||^^Boston^MA^02118"
LAB = (
    "PID|||L1^^^LAB^MR||Okonkwo^Margaret||19610702|F|||"
    "417 Elm Street^^Springfield^MA^01103^USA||(413)555-0142||||||123-45-6789"
)


def pix(c, control_id, identifier, domains, what, msa="AA", qak="OK"):
    sent = message(
        msh("QBP^Q23^QBP_Q21", control_id, "PIX_CONSUMER", "LAB"),
        f"QPD|IHE PIX Query|{control_id}Q|{identifier}|{domains}",
        "RCP|I",
    )
    parsed = answered(sent, c.send(sent), what, msa, "RSP^K23^RSP_K23")
    if parsed is None:
        return []
    check(field(parsed, "QAK", 1) == f"{control_id}Q", f"{what}: QAK-1 echoes QPD-2")
    check(field(parsed, "QAK", 2) == qak, f"{what}: QAK-2 {field(parsed, 'QAK', 2)!r}")
    pids = segments(parsed, "PID")
    if not pids:
        return []
    # PID-3 repetitions as (id, assigning authority namespace).
    return [(str(r[0]), str(r[3][0]) if len(r) > 3 else "") for r in pids[0][3]]


def euid_of(ids):
    return next((i for i, a in ids if a == "EMPI"), None)


def hl7_feed_and_queries(addr):
    c = Mllp(addr)
    sent = adt("A04", "ADT_A01", "LIVE-1", MARGARET.format(id="MRN1"), "PV1|1|O")
    first = c.send(sent)
    answered(sent, first, "A04 register", "AA", "ACK^A04^ACK")
    sent = adt("A04", "ADT_A01", "LIVE-2", MAGGIE, "PV1|1|O")
    answered(sent, c.send(sent), "A04 second registration", "AA", "ACK^A04^ACK")
    moved = MARGARET.format(id="MRN1").replace("417 Elm Street", "9 Oak Lane")
    sent = adt("A08", "ADT_A01", "LIVE-3", moved, "PV1|1|O")
    answered(sent, c.send(sent), "A08 update", "AA", "ACK^A08^ACK")
    sent = adt("A04", "ADT_A01", "LIVE-4", LAB, "PV1|1|O")
    answered(sent, c.send(sent), "A04 another domain", "AA", "ACK^A04^ACK")
    # The replay of a message already applied is answered as before.
    sent = adt("A04", "ADT_A01", "LIVE-1", MARGARET.format(id="MRN1"), "PV1|1|O")
    check(c.send(sent) == first, "a replayed A04 is answered byte for byte as before")

    before_1 = pix(c, "PIX-1", "MRN1^^^GOODHEALTH", "^^^LAB~^^^EMPI", "Q23 before the merge")
    before_2 = pix(c, "PIX-2", "MRN2^^^GOODHEALTH", "^^^EMPI", "Q23 the second MRN")
    check(("L1", "LAB") in before_1, f"Q23: the lab's identifier listed: {before_1}")
    check(
        all(a in ("LAB", "EMPI") for _, a in before_1),
        f"Q23: only the domains asked for: {before_1}",
    )
    check(("MRN1", "GOODHEALTH") not in before_1, "Q23: not the identifier asked about")
    survivor, retired = euid_of(before_1), euid_of(before_2)
    check(survivor and retired and survivor != retired, "two persons before the merge")

    a40 = adt(
        "A40",
        "ADT_A39",
        "LIVE-5",
        "PID|||MRN1^^^GOODHEALTH^MR||Okonkwo^Margaret",
        "MRG|MRN2^^^GOODHEALTH",
    )
    merged = c.send(a40)
    answered(a40, merged, "A40 merge", "AA", "ACK^A40^ACK")
    check(c.send(a40) == merged, "a replayed A40 is answered as before")
    after = pix(c, "PIX-3", "MRN2^^^GOODHEALTH", "^^^EMPI", "Q23 after the merge")
    check(euid_of(after) == survivor, f"one person after the merge: {after}")

    pix(c, "PIX-4", "NOSUCH^^^GOODHEALTH", "", "Q23 unknown identifier", "AE", "AE")

    sent = message(
        msh("QBP^Q22^QBP_Q21", "PDQ-1", "PDQ_CONSUMER", "ED"),
        "QPD|IHE PDQ Query|PDQ-1Q|@PID.5.1.1^Okonkwo~@PID.7.1^19610702~@PID.8^F",
        "RCP|I|5^RD",
    )
    parsed = answered(sent, c.send(sent), "Q22", "AA", "RSP^K22^RSP_K21")
    if parsed is not None:
        check(field(parsed, "QAK", 2) == "OK", "Q22: QAK-2 OK")
        pids, qris = segments(parsed, "PID"), segments(parsed, "QRI")
        check(len(pids) >= 1 and len(pids) == len(qris), "Q22: a QRI per candidate")
        check(str(pids[0][5][0][0]) == "Okonkwo", "Q22: the candidate's family name")
        ids = [str(r[0]) for r in pids[0][3]]
        check(survivor in ids, f"Q22: the EUID among the candidate's identifiers: {ids}")
        score = float(str(qris[0][1]))
        check(0.0 <= score <= 1.0, f"Q22: QRI-1 a score in [0, 1]: {score}")
        hits = [int(field(parsed, "QAK", i)) for i in (4, 5, 6)]
        check(hits[0] == hits[1] + hits[2], f"Q22: QAK hit counts add up: {hits}")

    # Not HL7 at all: refused, and the connection keeps serving.
    bad = "MSH|^~\\&|ADT_SENDER|GOOD_HEALTH|EMPI|CITY_HOSP|1||ZZZ^Z99|LIVE-BAD|P|2.5\r"
    answered(bad, c.send(bad), "unknown message type", "AR")
    c.close()
    return survivor, retired


# --- FHIR R4 over HTTP ----------------------------------------------------------------------


def fhir(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Accept", "application/fhir+json")
    if data is not None:
        request.add_header("Content-Type", "application/fhir+json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def valid(what, status, content_type, raw, want_status, want_type):
    """Checks the status and the media type, and validates the answer against the R4 model
    of its resourceType; returns it as JSON."""
    check(status == want_status, f"{what}: HTTP {status}, expected {want_status}")
    check(content_type.startswith("application/fhir+json"), f"{what}: {content_type!r}")
    try:
        resource = json.loads(raw)
    except ValueError:
        check(False, f"{what}: JSON")
        return {}
    kind = resource.get("resourceType")
    check(kind == want_type, f"{what}: {kind}, expected {want_type}")
    try:
        get_fhir_model_class(kind).parse_obj(resource)
        check(True, f"{what}: valid R4 {kind}")
    except Exception as e:  # noqa: BLE001 - the validator's finding
        check(False, f"{what}: not a valid R4 {kind}: {e}")
    return resource


MATCH = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "resource",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
                "name": [{"family": "Okonkwo", "given": ["Margaret", "Adaeze"]}],
                "telecom": [{"system": "phone", "value": "(413) 555-0142"}],
                "gender": "female",
                "birthDate": "1961-07-02",
                "address": [{"line": ["9 Oak Lane"], "city": "Springfield", "state": "MA", "postalCode": "01103"}],
            },
        },
        {"name": "onlyCertainMatches", "valueBoolean": False},
        {"name": "count", "valueInteger": 3},
    ],
}


def fhir_calls(addr, survivor, retired):
    base = f"http://{addr}/fhir"
    cs = valid("metadata", *fhir(base, "GET", "/metadata"), 200, "CapabilityStatement")
    check(cs.get("fhirVersion") == "4.0.1", "metadata: FHIR 4.0.1")

    bundle = valid("$match", *fhir(base, "POST", "/Patient/$match", MATCH), 200, "Bundle")
    check(bundle.get("type") == "searchset", "$match: a searchset")
    entries = bundle.get("entry") or [{}]
    top = entries[0]
    check(top.get("resource", {}).get("id") == survivor, "$match: the person the feed made")
    search = top.get("search", {})
    check(0.0 <= search.get("score", -1) <= 1.0, "$match: search.score in [0, 1]")
    grades = [
        e.get("valueCode")
        for e in search.get("extension", [])
        if e.get("url") == "http://hl7.org/fhir/StructureDefinition/match-grade"
    ]
    check(grades == ["certain"], f"$match: match-grade certain: {grades}")

    source = urllib.parse.quote("urn:empi:source:GOODHEALTH|MRN1", safe="")
    target = urllib.parse.quote("urn:empi:source:LAB", safe="")
    path = f"/Patient/$ihe-pix?sourceIdentifier={source}&targetSystem={target}"
    params = valid("$ihe-pix", *fhir(base, "GET", path), 200, "Parameters")
    targets = [
        p.get("valueIdentifier", {})
        for p in params.get("parameter", [])
        if p.get("name") == "targetIdentifier"
    ]
    check(
        {"system": "urn:empi:source:LAB", "value": "L1"} in targets,
        f"$ihe-pix: the lab's identifier: {targets}",
    )

    patient = valid("read", *fhir(base, "GET", f"/Patient/{survivor}"), 200, "Patient")
    values = {i.get("value") for i in patient.get("identifier", [])}
    check({"MRN1", "MRN2", "L1"} <= values, f"read: every linked identifier: {values}")
    check(
        any(l.get("type") == "replaces" for l in patient.get("link", [])),
        "read: Patient.link replaces the merged EUID",
    )
    old = valid("read merged", *fhir(base, "GET", f"/Patient/{retired}"), 200, "Patient")
    check(
        any(l.get("type") == "replaced-by" for l in old.get("link", [])),
        "read merged: Patient.link replaced-by the survivor",
    )

    valid("unknown EUID", *fhir(base, "GET", "/Patient/E00000000ZZ"), 404, "OperationOutcome")
    status, ctype, raw = fhir(base, "POST", "/Patient/$match", None)
    valid("empty $match", status, ctype, raw, 400, "OperationOutcome")
    wrong = {"resourceType": "Patient", "name": [{"family": "Okonkwo"}]}
    valid("wrong resource type", *fhir(base, "POST", "/Patient/$match", wrong), 400, "OperationOutcome")
    valid("unknown route", *fhir(base, "GET", "/Observation/1"), 404, "OperationOutcome")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    survivor, retired = hl7_feed_and_queries(sys.argv[1])
    fhir_calls(sys.argv[2], survivor, retired)
    print(f"live: {PASSED[0]} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
