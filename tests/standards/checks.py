"""What the standards scripts (validate.py, live.py) share: counted checks and reading
HL7 v2 messages parsed by the PyPI hl7 package."""

FAILURES = []
PASSED = [0]


def check(ok, what):
    """Counts one check; a failure is printed and kept, not raised."""
    if ok:
        PASSED[0] += 1
    else:
        FAILURES.append(what)
        print("FAIL:", what)


def field(msg, seg, *pos):
    """The field at `pos` of the first `seg` segment, "" when there is none."""
    try:
        return str(msg.extract_field(seg, 1, *pos))
    except (KeyError, IndexError):
        return ""


def segments(msg, name):
    """Every segment named `name`, in order."""
    return [s for s in msg if str(s[0]) == name]
