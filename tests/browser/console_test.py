"""The registrar console in a real browser: Debian's chromium driven by Playwright.

Run by tests/browser/run.sh against a live `empi serve --console` over synthetic data.
A registrar signs in, opens the worklist, opens a task and resolves it by keyboard; the
person page shows the change; a second registrar acting on the same task is told who
resolved it and changes nothing; a submitter cannot sign in. Screenshots of the worklist,
a task and a person page are written to --screenshots.

Exit status 0 with "N passed, 0 failed" on the last line, 1 otherwise.
"""

import argparse
import re
import sys

from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

checks = {"passed": 0, "failed": 0}


def check(name, fn):
    """Runs one named check, counting it; a failure is printed and counted, not raised."""
    try:
        fn()
        checks["passed"] += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        checks["failed"] += 1
        print(f"FAIL {name}: {e}")


def sign_in(page, base, token):
    page.goto(f"{base}/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--registrar", required=True)
    ap.add_argument("--second-registrar", required=True)
    ap.add_argument("--submitter", required=True)
    ap.add_argument("--screenshots", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    base = a.url.rstrip("/")
    shots = a.screenshots.rstrip("/")

    with sync_playwright() as p:
        # Playwright starts chromium with a fresh, empty profile directory of its own (it
        # refuses a --user-data-dir argument): nothing is shared with any other run.
        browser = p.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
        viewport = {"width": 1280, "height": 900}
        ann_ctx = browser.new_context(viewport=viewport)
        bob_ctx = browser.new_context(viewport=viewport)
        adt_ctx = browser.new_context(viewport=viewport)
        ann, bob, adt = ann_ctx.new_page(), bob_ctx.new_page(), adt_ctx.new_page()
        state = {}

        def submitter_is_refused():
            sign_in(adt, base, a.submitter)
            expect(adt.get_by_role("alert")).to_contain_text("A submitter credential cannot sign in")
            assert adt.url.endswith("/login"), adt.url
            assert not [c for c in adt_ctx.cookies() if c["name"] == "empi_session"]
            adt.goto(f"{base}/worklist")
            assert "/login" in adt.url, "not signed in"

        def registrar_signs_in_and_sees_the_worklist():
            sign_in(ann, base, a.registrar)
            expect(ann.get_by_role("heading", name="Worklist", level=1)).to_be_visible()
            session = [c for c in ann_ctx.cookies() if c["name"] == "empi_session"][0]
            assert session["httpOnly"] and session["sameSite"] == "Strict", session
            heading = ann.locator("#workload").inner_text()
            state["open_before"] = int(heading.split()[0])
            assert state["open_before"] > 0, heading
            ann.screenshot(path=f"{shots}/worklist.png")

        def help_overlay_by_keyboard():
            ann.keyboard.press("?")
            expect(ann.locator("#help")).to_be_visible()
            ann.keyboard.press("Escape")
            expect(ann.locator("#help")).to_be_hidden()

        def task_opened_by_keyboard():
            ann.keyboard.press("j")
            focused = ann.evaluate("document.activeElement.textContent")
            assert re.fullmatch(r"T\d{8}", focused), focused
            state["task"] = focused
            ann.keyboard.press("Enter")
            expect(ann.get_by_role("heading", name=f"Review task {focused}")).to_be_visible()
            expect(ann.locator("p.why")).to_contain_text("Why a registrar is needed")
            state["record_person"] = ann.locator("p a[href^='/persons/']").first.inner_text()
            state["candidate_person"] = ann.locator("section.candidate h2 a").first.inner_text()
            # The second registrar opens the same task before the first decides.
            sign_in(bob, base, a.second_registrar)
            bob.goto(f"{base}/tasks/{focused}")
            expect(bob.get_by_role("button", name=re.compile("Link to chosen person"))).to_be_visible()
            ann.screenshot(path=f"{shots}/task.png", full_page=True)

        def resolved_by_keyboard():
            ann.keyboard.press("s")
            ann.wait_for_load_state()
            expect(ann.locator("p.flash")).to_contain_text(f"Task {state['task']}: kept separate.")
            ann.goto(f"{base}/tasks/{state['task']}")
            expect(ann.locator("p.resolved")).to_contain_text("kept separate by")

        def person_page_shows_the_change():
            ann.goto(f"{base}/persons/{state['record_person']}")
            expect(ann.get_by_role("heading", name="Golden view")).to_be_visible()
            history = ann.locator("table.history")
            expect(history).to_contain_text("review task resolved")
            expect(history).to_contain_text(state["task"])
            # The candidate's page: several records from several sources, and the new
            # assertion that the two are different people.
            ann.goto(f"{base}/persons/{state['candidate_person']}")
            expect(ann.locator("table.history")).to_contain_text("asserted a different person")
            ann.screenshot(path=f"{shots}/person.png", full_page=True)
            ann.goto(f"{base}/worklist")
            after = int(ann.locator("#workload").inner_text().split()[0])
            assert after == state["open_before"] - 1, (state["open_before"], after)

        def second_registrar_gets_the_conflict():
            bob.keyboard.press("l")
            bob.wait_for_load_state()
            alert = bob.get_by_role("alert")
            expect(alert).to_contain_text(re.compile(r"already resolved by \S+ at \d{4}-"))
            bob.goto(f"{base}/tasks/{state['task']}")
            expect(bob.locator("p.resolved")).to_contain_text("kept separate by")
            expect(bob.locator("p.resolved")).not_to_contain_text("linked")

        def works_without_scripting():
            ctx = browser.new_context(viewport=viewport, java_script_enabled=False)
            page = ctx.new_page()
            sign_in(page, base, a.registrar)
            page.get_by_role("link", name="Search").click()
            page.get_by_label("Family name").fill("Hamby")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_role("heading", name="Persons found")).to_be_visible()
            assert page.url.endswith("/search"), page.url
            ctx.close()

        for name, fn in [
            ("a submitter credential is refused", submitter_is_refused),
            ("a registrar signs in and sees the worklist", registrar_signs_in_and_sees_the_worklist),
            ("the help overlay opens and closes by keyboard", help_overlay_by_keyboard),
            ("a task is opened by keyboard", task_opened_by_keyboard),
            ("the task is resolved by keyboard", resolved_by_keyboard),
            ("the person page and the worklist show the change", person_page_shows_the_change),
            ("a second registrar on the same task gets the conflict", second_registrar_gets_the_conflict),
            ("search works without scripting", works_without_scripting),
        ]:
            check(name, fn)
        browser.close()

    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
