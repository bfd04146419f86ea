#!/usr/bin/env python3
"""Checks empi's HL7 v2 and FHIR answers with parsers that were not written against empi.

The answers are the files under tests/fixtures/hl7/expected and tests/fixtures/fhir/expected,
which tests/it/standards.rs holds equal to what the codecs produce.

HL7 v2 (the PyPI `hl7` package): for every case of tests/fixtures/hl7/cases.json, the input
(unless it is one of the bad ones) and the answer parse; the answer goes back to the sender
(MSH-5/6 = the input's MSH-3/4), keeps its version, has the expected MSA-1 and MSA-2 = the
input's MSH-10; an ERR exists exactly when MSA-1 is not AA and names the expected segment;
a query's answer echoes QPD-2 in QAK-1 and the QPD itself, has the expected QAK-2, a PIX
answer lists only identifiers of the requested domains and never the queried one, and a
PDQ answer has one PID and QRI a candidate, hit counts that add up and DSC exactly when the
case has a continuation.

FHIR R4 (`fhir.resources` 6.2, FHIR 4.0.1 models): every JSON answer, and every good input,
validates against the model of its resourceType; searchset entries carry a score in [0, 1]
and a match-grade code of the value set (the models check structure and types, not codes). A known-bad resource must be refused, so a
validator that accepts everything cannot pass.

Usage: validate.py FIXTURES_DIR. Prints one line a check that failed, then
"N passed, N failed"; exits 1 when any failed.
"""

import json
import pathlib
import sys

import hl7
from fhir.resources import get_fhir_model_class

from checks import FAILURES, PASSED, check, field, segments

def read_hl7(path):
    """The message in a fixture file (LF segment ends there, CR on the wire), decoded in
    the character set its MSH-18 declares."""
    raw = path.read_bytes()
    charset = "latin-1" if b"|8859/1" in raw.split(b"\n", 1)[0] else "utf-8"
    return raw.decode(charset).replace("\r\n", "\r").replace("\n", "\r").strip("\r")


def check_hl7_case(root, case):
    name = case["input"]
    text_in = read_hl7(root / name)
    answer = hl7.parse(read_hl7(root / case["expected"]))
    request = None
    try:
        request = hl7.parse(text_in)
        request.segment("MSH")
    except Exception:  # noqa: BLE001 - the bad inputs are allowed not to parse
        request = None
        check(name.startswith("bad-"), f"{name}: the input does not parse with hl7")

    mtype = field(answer, "MSH", 9, 1, 1)
    check(mtype in ("ACK", "RSP"), f"{name}: answer type {mtype}")
    check(field(answer, "MSA", 1) == case["msa"], f"{name}: MSA-1 {field(answer, 'MSA', 1)}")
    # Without usable delimiters (MSH-1, MSH-2) or MSH itself, empi reads no header, so it
    # has no sender to answer and no control id to echo (the hl7 package is more lenient
    # and may read one).
    unreadable = case.get("error") in ("MSH", "MSH-1", "MSH-2")
    if unreadable:
        check(field(answer, "MSA", 2) == "", f"{name}: MSA-2 empty without a readable MSH")
    elif request is not None:
        check(field(answer, "MSA", 2) == field(request, "MSH", 10), f"{name}: MSA-2 echoes MSH-10")
        check(field(answer, "MSH", 5) == field(request, "MSH", 3), f"{name}: MSH-5 is the sender")
        check(field(answer, "MSH", 6) == field(request, "MSH", 4), f"{name}: MSH-6 is the sender's facility")
        version = field(request, "MSH", 12)
        if version in ("2.3.1", "2.4", "2.5", "2.5.1"):
            check(field(answer, "MSH", 12) == version, f"{name}: MSH-12 kept")
    errs = segments(answer, "ERR")
    check(bool(errs) == (case["msa"] != "AA"), f"{name}: ERR present exactly on an error")
    if "error" in case and errs:
        v25 = field(answer, "MSH", 12) not in ("2.3.1", "2.4")
        where = field(answer, "ERR", 2, 1, 1) if v25 else field(answer, "ERR", 1, 1, 1)
        check(where == case["error"].split("-")[0], f"{name}: ERR names segment {where}")

    if "qak" not in case:
        return
    check(field(answer, "QAK", 2) == case["qak"], f"{name}: QAK-2 {field(answer, 'QAK', 2)}")
    if request is None:
        return
    check(field(answer, "QAK", 1) == field(request, "QPD", 2), f"{name}: QAK-1 echoes QPD-2")
    check(str(answer.segment("QPD")) == str(request.segment("QPD")), f"{name}: QPD echoed")
    pids = segments(answer, "PID")
    if mtype == "RSP" and field(answer, "MSH", 9, 1, 2) == "K23" and case["qak"] == "OK":
        qpd = request.segment("QPD")
        wanted = {str(r[3][0]) for r in qpd[4]} if len(qpd) > 4 and str(qpd[4]) else None
        queried = (str(qpd[3][0][0][0]), str(qpd[3][0][3][0]))
        check(len(pids) == 1, f"{name}: one PID")
        for rep in pids[0][3]:
            cx = (str(rep[0]), str(rep[3][0]) if len(rep) > 3 else "")
            check(wanted is None or cx[1] in wanted, f"{name}: {cx[1]} is a requested domain")
            check(cx != queried, f"{name}: the queried identifier is not answered")
    if field(answer, "MSH", 9, 1, 2) == "K22" and "pdq" in case:
        pdq = case["pdq"]
        n = len(pdq["candidates"])
        check(len(pids) == n and len(segments(answer, "QRI")) == n, f"{name}: a PID and QRI a candidate")
        counts = [field(answer, "QAK", i) for i in (4, 5, 6)]
        check(counts == [str(pdq["total"]), str(n), str(pdq["remaining"])], f"{name}: QAK hit counts {counts}")
        dsc = segments(answer, "DSC")
        check(bool(dsc) == bool(pdq["continuation"]), f"{name}: DSC exactly when more follow")
        for q in segments(answer, "QRI"):
            check(0.0 <= float(str(q[1])) <= 1.0, f"{name}: QRI-1 a score in [0, 1]")


def validate_fhir(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        get_fhir_model_class(data["resourceType"]).parse_obj(data)
        check(True, "")
    except Exception as e:  # noqa: BLE001 - pydantic's errors say what is wrong
        check(False, f"{path.name}: not a valid R4 {data.get('resourceType')}: {e}")
        return
    if data["resourceType"] == "Bundle":
        # The models do not check codes against their value sets; the ones that matter here:
        check(data["type"] == "searchset", f"{path.name}: a searchset")
        for i, entry in enumerate(data.get("entry", [])):
            search = entry.get("search", {})
            check(search.get("mode") == "match" and 0 <= search.get("score", -1) <= 1,
                  f"{path.name}: entry {i} has mode match and a score in [0, 1]")
            grades = [x["valueCode"] for x in search.get("extension", [])
                      if x["url"] == "http://hl7.org/fhir/StructureDefinition/match-grade"]
            check(len(grades) == 1 and grades[0] in ("certain", "probable", "possible", "certainly-not"),
                  f"{path.name}: entry {i} has one match grade")


def main():
    root = pathlib.Path(sys.argv[1])
    cases = json.loads((root / "hl7" / "cases.json").read_text(encoding="utf-8"))["cases"]
    for case in cases:
        check_hl7_case(root / "hl7", case)
    listed = {c["expected"].split("/")[-1] for c in cases}
    on_disk = {p.name for p in (root / "hl7" / "expected").iterdir()}
    check(listed == on_disk, f"hl7/expected holds answers no case lists: {sorted(on_disk - listed)}")

    fhir = root / "fhir"
    answers = sorted((fhir / "expected").glob("*.json"))
    check(len(answers) >= 10, "the FHIR answers are there")
    for path in answers + sorted(p for p in fhir.glob("*.json") if not p.name.startswith("bad-")):
        validate_fhir(path)
    # The validator itself refuses what R4 does not allow.
    for bad in ({"resourceType": "Bundle"},
                {"resourceType": "Patient", "birthDate": "1961-02-30"},
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}):
        try:
            get_fhir_model_class(bad["resourceType"]).parse_obj(bad)
            check(False, f"the R4 models accepted {bad}")
        except Exception:  # noqa: BLE001
            check(True, "")

    print(f"standards: {PASSED[0]} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
