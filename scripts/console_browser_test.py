#!/usr/bin/env python3
"""The operator console in a real browser (headless Chromium driven by
Selenium through Debian's chromium-driver), against a running dop stack
that scripts/check-console.sh started on its own ports, databases and
vhost. Each step has a deadline; the first failure stops the run with what
the page showed. Run it through scripts/check-console.sh.

Environment (set by check-console.sh): CONSOLE_URL (the order role),
INVENTORY_URL, OPERATOR_TOKEN, READ_TOKEN, INVENTORY_DB, MGMT_URL, VHOST,
STACK (scripts/stack.sh), SHOTS (a directory for the screenshots).
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["CONSOLE_URL"].rstrip("/")
INVENTORY_URL = os.environ["INVENTORY_URL"].rstrip("/")
OPERATOR = os.environ["OPERATOR_TOKEN"]
READER = os.environ["READ_TOKEN"]
INVENTORY_DB = os.environ["INVENTORY_DB"]
MGMT = os.environ["MGMT_URL"].rstrip("/")
VHOST = os.environ["VHOST"]
STACK = os.environ["STACK"]
SHOTS = os.environ["SHOTS"]
WAIT = float(os.environ.get("CONSOLE_WAIT", "30"))

passed = 0


def ok(what):
    global passed
    passed += 1
    print(f"PASS {what}", flush=True)


class Failed(Exception):
    pass


# ---- the stack, over HTTP -----------------------------------------------------


def call(method, url, body=None, token=None, auth=None):
    """(status, parsed JSON or None) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def mgmt(method, path, body=None):
    import base64

    basic = "Basic " + base64.b64encode(b"guest:guest").decode()
    return call(method, MGMT + path, body, auth=basic)


def eventually(what, fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    raise Failed(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def place(product, qty, amount):
    st, body = call("POST", f"{URL}/orders",
                    {"user_id": 7, "product_id": product, "quantity": qty, "total_amount": amount})
    if st != 201:
        raise Failed(f"POST /orders answered {st}: {body}")
    return str(body["order_id"]), body["saga_id"]


def saga(saga_id):
    st, body = call("GET", f"{URL}/admin/sagas/{saga_id}", token=READER)
    if st != 200:
        raise Failed(f"GET /admin/sagas/{saga_id} answered {st}: {body}")
    return body["saga"]


def order_status(order_id):
    return call("GET", f"{URL}/orders/{order_id}")[1]["status"]


def stack(*args, **env):
    e = dict(os.environ, **env)
    subprocess.run([STACK, *args], check=True, env=e, stdout=subprocess.DEVNULL)


def sql(statement):
    subprocess.run(["mysql", "-h127.0.0.1", "-uroot", INVENTORY_DB, "-e", statement], check=True)


def dead_letter_the_pending_reserve(saga_id):
    """Takes the reserve command of `saga_id` off inventory.commands (its
    role is stopped) and puts it in the DLQ with the headers a consumer
    that gave up on it writes (messaging::consumer::dead_letter)."""
    vh = urllib.parse.quote(VHOST, safe="")

    def get():
        st, msgs = mgmt("POST", f"/api/queues/{vh}/inventory.commands/get",
                        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
        return msgs if st == 200 and msgs else None

    m = eventually("the reserve in inventory.commands", get)[0]
    props = m["properties"]
    headers = dict(props.get("headers") or {})
    if headers.get("saga_id") != saga_id:
        raise Failed(f"expected the reserve of {saga_id}, got {headers}")
    headers.update({
        "x-retry-count": 3,
        "x-dlq-reason": "retries exhausted: inventory unreachable (console test)",
        "x-original-exchange": m["exchange"],
        "x-original-routing-key": m["routing_key"],
        "x-original-queue": "inventory.commands",
    })
    st, r = mgmt("POST", f"/api/exchanges/{vh}/amq.default/publish", {
        "properties": {"message_id": props["message_id"], "delivery_mode": 2, "headers": headers},
        "routing_key": "inventory.commands.dlq",
        "payload": m["payload"],
        "payload_encoding": m["payload_encoding"],
    })
    if st != 200 or not r.get("routed"):
        raise Failed(f"publishing to the DLQ answered {st}: {r}")


# ---- the browser ----------------------------------------------------------------


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_for(d, what, fn, timeout=WAIT):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.2).until(lambda _: fn())
    except TimeoutException:
        raise Failed(f"timed out after {timeout:.0f}s waiting for {what}; the page showed:\n"
                     + text(d, "body")[:2000]) from None


def text(d, css):
    """The visible text of the first element matching `css` ("" if none or
    hidden), read in one script call: the page re-renders as it refreshes."""
    return d.execute_script(
        "const el = document.querySelector(arguments[0]);"
        "return el && !el.closest('[hidden]') ? el.innerText : '';", css)


def click(d, css, timeout=WAIT):
    """Clicks the element `css` names; the page redraws itself every few
    seconds, so a click that meets a replaced element is tried again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return
        except (StaleElementReferenceException, NoSuchElementException):
            if time.monotonic() > deadline:
                raise Failed(f"could not click {css}; the page showed:\n" + text(d, "body")[:2000]) from None
            time.sleep(0.1)


def attrs(d, css, name):
    """The attribute `name` of every element matching `css`, read at once."""
    return d.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.getAttribute(arguments[1]));",
        css, name)


def count(d, css):
    return len(attrs(d, css, "class"))


def go(d, hash_):
    d.get(f"{URL}/console{hash_}")


def shot(d, name):
    """The whole page (the window grown to its height), then back."""
    path = os.path.join(SHOTS, name)
    size = d.get_window_size()
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(size["width"], max(size["height"], min(height + 20, 3000)))
    time.sleep(0.2)
    d.save_screenshot(path)
    d.set_window_size(size["width"], size["height"])
    print(f"     screenshot {path}")


def confirm(d, yes=True):
    wait_for(d, "the confirmation dialog", lambda: d.find_element(By.ID, "confirm-dialog").is_displayed())
    click(d, "#confirm-yes" if yes else "#confirm-no")


def set_token(d, token):
    click(d, "#token-set")
    wait_for(d, "the token dialog", lambda: d.find_element(By.ID, "token-dialog").is_displayed())
    box = d.find_element(By.ID, "token-input")
    box.send_keys(token)
    box.send_keys(Keys.ENTER)
    wait_for(d, "the token to be kept", lambda: "Token set" in text(d, "#token-state"))


def token_nowhere_but_the_session(d, token):
    """The token is in sessionStorage, in no URL, cookie or localStorage."""
    assert token not in d.current_url, d.current_url
    assert d.execute_script("return window.localStorage.length") == 0
    assert token not in d.execute_script("return document.cookie")
    assert d.execute_script("return sessionStorage.getItem('dop.console.token')") == token


def no_horizontal_scroll(d):
    w = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert w[0] <= w[1] + 1, f"the page is wider ({w[0]}px) than the window ({w[1]}px)"


def console_errors(d):
    """Browser console errors other than the API's own 4xx answers."""
    out = []
    for e in d.get_log("browser"):
        if e["level"] == "SEVERE" and "the server responded with a status of 4" not in e["message"]:
            out.append(e["message"])
    return out


def run(d):
    # 1. The first screen without a token: the API's 401, shown with its code.
    go(d, "#/")
    wait_for(d, "the 401 of the summary", lambda: "HTTP 401 UNAUTHORIZED" in text(d, "#error"))
    assert "set the read or operator token" in text(d, "#view"), text(d, "#view")
    ok("without a token the console shows the API's 401 with code and message")

    # 2. An empty system: a helpful first screen.
    set_token(d, READER)
    wait_for(d, "the empty first screen", lambda: "No sagas yet" in text(d, "#empty-state"))
    assert "/orders" in text(d, "#empty-state")
    token_nowhere_but_the_session(d, READER)
    ok("an empty system shows how to place a first order")
    shot(d, "empty.png")

    # 3. Orders: one that completes, one refused for stock, one whose
    # payment is declined, and one whose compensation fails.
    for product, qty in [(1, 10), (2, 5)]:
        st, body = call("POST", f"{INVENTORY_URL}/inventory",
                        {"product_id": product, "available_qty": qty}, token=OPERATOR)
        if st not in (200, 201):
            raise Failed(f"POST /inventory answered {st}: {body}")
    good, good_saga = place(1, 2, 19.98)
    short, short_saga = place(1, 1000, 9990.00)
    eventually("the good order to be CONFIRMED", lambda: order_status(good) == "CONFIRMED")
    eventually("the short order to FAIL", lambda: order_status(short) == "FAILED")
    ok(f"orders placed: {good} confirmed, {short} failed for stock")

    stack("stop", "payment")
    broken, broken_saga = place(2, 3, 3.00)
    eventually("the reserve of the third order", lambda: saga(broken_saga)["current_step"] == "PROCESSING_PAYMENT")
    # Someone took the reserved units by hand: the release will fail.
    sql("UPDATE inventories SET reserved_qty = 0, available_qty = 5 WHERE product_id = 2")
    stack("start", "payment", PAYMENT_FAILURE_RATE="1.0")
    stack("wait-ready", "payment")
    eventually("the compensation to fail", lambda: saga(broken_saga)["status"] == "FAILED")
    assert saga(broken_saga)["failed_step"] == "RELEASING_INVENTORY"
    declined, declined_saga = place(1, 1, 5.00)
    eventually("the declined order to be COMPENSATED", lambda: order_status(declined) == "COMPENSATED")
    stack("restart", "payment", PAYMENT_FAILURE_RATE="0.0")
    stack("wait-ready", "payment")
    ok(f"order {broken} failed its compensation, order {declined} was declined and compensated")

    # A dead letter: a reserve its role never took.
    stack("stop", "inventory")
    lost, lost_saga = place(1, 1, 5.00)
    dead_letter_the_pending_reserve(lost_saga)
    stack("start", "inventory")
    stack("wait-ready", "inventory")

    # 4. The overview counts them, live.
    go(d, "#/")
    wait_for(d, "the counters", lambda: text(d, "#c-failed .card-value") == "2" and text(d, "#c-completed .card-value") == "1"
             and text(d, "#c-compensated .card-value") == "1" and text(d, "#c-in-flight .card-value") == "1")
    assert "in the last 60s" in text(d, "#c-completed"), text(d, "#c-completed")
    assert count(d, "#empty-state") == 0
    ok("the overview counts in flight 1, completed 1, compensated 1, failed 2, with rates")

    # 5. The list: filter by status, find by order id, open a timeline.
    go(d, "#/sagas")
    wait_for(d, "the saga list", lambda: count(d, "#saga-table tbody tr") == 5)
    listed = set(attrs(d, "#saga-table tbody tr", "data-saga"))
    assert listed == {good_saga, short_saga, broken_saga, declined_saga, lost_saga}, listed
    click(d, "#f-status option[value='FAILED']")
    click(d, "#filters button[type=submit]")
    wait_for(d, "the FAILED filter", lambda: count(d, "#saga-table tbody tr") == 2)
    assert "status=FAILED" in d.current_url
    listed = set(attrs(d, "#saga-table tbody tr", "data-saga"))
    assert listed == {short_saga, broken_saga}, listed
    ok("the list shows every saga and filters by status")

    # Paging: two per page, newest first, forward to the end and back.
    go(d, "#/sagas")
    wait_for(d, "the saga list", lambda: count(d, "#saga-table tbody tr") == 5)
    click(d, "#f-limit option[value='10']")
    click(d, "#filters button[type=submit]")
    wait_for(d, "the per-page choice", lambda: "limit=10" in d.current_url)
    go(d, "#/sagas?limit=2")

    def page():
        return attrs(d, "#saga-table tbody tr", "data-saga")

    newest_first = [lost_saga, declined_saga, broken_saga, short_saga, good_saga]
    wait_for(d, "page 1", lambda: page() == newest_first[:2])
    click(d, "#next-page")
    wait_for(d, "page 2", lambda: page() == newest_first[2:4])
    click(d, "#next-page")
    wait_for(d, "page 3", lambda: page() == newest_first[4:])
    assert count(d, "#next-page") == 0, "a next page after the last saga"
    click(d, "#prev-page")
    wait_for(d, "back to page 2", lambda: page() == newest_first[2:4])
    ok("paging: two per page, Next to the last page and Previous back")

    # The list redraws itself every 5 s: a filter being chosen and the
    # focus stay where the operator left them.
    click(d, "#f-status option[value='COMPENSATED']")
    d.execute_script("document.getElementById('f-status').focus();"
                     "window.shownTable = document.getElementById('saga-table');")
    wait_for(d, "the list to redraw itself", lambda: d.execute_script(
        "return document.getElementById('saga-table') !== window.shownTable"), timeout=15)
    assert d.execute_script("return document.getElementById('f-status').value") == "COMPENSATED"
    assert d.switch_to.active_element.get_attribute("id") == "f-status", d.switch_to.active_element.get_attribute("id")
    ok("a redraw keeps the filter being chosen and the keyboard focus")

    # Stuck: the saga whose reserve died has not moved.
    go(d, "#/sagas")
    wait_for(d, "the stuck saga to be marked", lambda: "STUCK" in text(d, f'tr[data-saga="{lost_saga}"]'), timeout=60)
    assert "stuck" in attrs(d, f'tr[data-saga="{lost_saga}"]', "class")[0]
    ok("a saga that has not moved is marked STUCK (a word, not only a colour)")
    shot(d, "sagas.png")

    search = d.find_element(By.ID, "search-q")
    search.clear()
    search.send_keys(good + Keys.ENTER)
    wait_for(d, "the saga page of the good order", lambda: good_saga in text(d, "#page-title"))
    wait_for(d, "its timeline", lambda: count(d, "#timeline tbody tr") == 3)
    events = attrs(d, "#timeline tbody tr", "data-event")
    assert events == ["order.created", "inventory.reserved", "payment.processed"], events
    assert "charged" in text(d, "#effects") and "reserved" in text(d, "#effects"), text(d, "#effects")
    ok("search by order id opens the saga: order, stock and payment effects, timeline")

    # 6. Retry the failed compensation: refused with the read token, done
    # with the operator's; it lands in the timeline.
    go(d, f"#/saga/{broken_saga}")
    wait_for(d, "the failed saga", lambda: "RELEASING_INVENTORY" in text(d, "#view"))
    shot(d, "saga-failed.png")
    click(d, "#retry")
    confirm(d)
    wait_for(d, "the refusal", lambda: "HTTP 403 FORBIDDEN" in text(d, "#error"))
    assert "operator token" in text(d, "#error"), text(d, "#error")
    st, body = call("POST", f"{URL}/admin/sagas/{broken_saga}/retry")
    assert st == 401 and body["code"] == "UNAUTHORIZED", (st, body)
    assert saga(broken_saga)["status"] == "FAILED"
    ok("a retry without the operator token is refused (403 shown; 401 with none) and changes nothing")

    click(d, "#retry")
    confirm(d, yes=False)
    time.sleep(0.5)
    assert saga(broken_saga)["status"] == "FAILED"
    ok("cancelling the confirmation does nothing")

    # The operator puts the units back, then retries with the token.
    sql("UPDATE inventories SET reserved_qty = 3, available_qty = 2 WHERE product_id = 2")
    click(d, "#token-forget")
    set_token(d, OPERATOR)
    token_nowhere_but_the_session(d, OPERATOR)
    wait_for(d, "the retry button", lambda: count(d, "#retry"))
    click(d, "#retry")
    confirm(d)
    wait_for(d, "the retry's result", lambda: "Retry accepted" in text(d, "#notice"))
    eventually("the retried saga to be COMPENSATED", lambda: saga(broken_saga)["status"] == "COMPENSATED")
    wait_for(d, "the timeline to show the retry and the release",
             lambda: count(d, '#timeline tr[data-event="operator.retry"]')
             and "COMPENSATED" in text(d, "#view .facts"), timeout=WAIT)
    ok("the retry with the operator token is accepted and lands in the timeline (operator.retry)")
    shot(d, "saga-retried.png")

    # 7. Dead letters: depth, the reason, redrive.
    go(d, "#/dlq")
    wait_for(d, "the dead letter", lambda: "retries exhausted" in text(d, "#view"))
    row = text(d, 'tr[data-dlq="inventory.commands.dlq"]')
    assert row.split()[:2] == ["inventory.commands.dlq", "1"], row
    assert lost_saga in text(d, ".samples"), text(d, ".samples")
    ok("the dead-letter page shows the depth and the message with its x-dlq-reason")
    shot(d, "dead-letters.png")
    click(d, 'button.redrive[data-queue="inventory.commands"]')
    confirm(d)
    wait_for(d, "the redrive's result", lambda: "moved 1 of 1" in text(d, "#notice"))
    eventually("the redriven order to be CONFIRMED", lambda: order_status(lost) == "CONFIRMED")
    wait_for(d, "the empty DLQ", lambda: "Every dead-letter queue is empty" in text(d, "#view"), timeout=WAIT)
    ok(f"redrive moved the dead letter back and order {lost} completed")

    # 8. Keyboard: Tab to the Sagas link, Enter; Escape closes a dialog.
    go(d, "#/")
    wait_for(d, "the overview", lambda: text(d, "#c-completed .card-value") == "2")
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(12):
        if d.switch_to.active_element.text == "Dead letters":
            break
        d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.switch_to.active_element.text == "Dead letters", d.switch_to.active_element.text
    d.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(d, "the dead-letter page by keyboard", lambda: d.current_url.endswith("#/dlq") and "Dead letters" in text(d, "#page-title"))
    d.find_element(By.ID, "token-set").send_keys(Keys.ENTER)
    wait_for(d, "the token dialog", lambda: d.find_element(By.ID, "token-dialog").is_displayed())
    d.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(d, "the dialog to close", lambda: not d.find_element(By.ID, "token-dialog").is_displayed())
    ok("usable by keyboard: Tab and Enter reach every section, Escape closes a dialog")
    go(d, "#/")
    wait_for(d, "the overview", lambda: text(d, "#c-completed .card-value") == "2")
    shot(d, "overview.png")

    # 9. Phone width: nothing wider than the screen.
    d.set_window_size(390, 844)
    for h in ["#/", "#/sagas", f"#/saga/{broken_saga}", "#/dlq"]:
        go(d, h)
        wait_for(d, f"{h} at phone width", lambda: count(d, "#page-title"))
        time.sleep(0.3)
        no_horizontal_scroll(d)
    go(d, "#/")
    wait_for(d, "the overview at phone width", lambda: text(d, "#c-completed .card-value") == "2")
    shot(d, "phone-overview.png")
    go(d, f"#/saga/{broken_saga}")
    wait_for(d, "the saga at phone width", lambda: count(d, "#timeline"))
    shot(d, "phone-saga.png")
    ok("phone width (390 px): every page fits, tables scroll inside their box")

    errs = console_errors(d)
    assert not errs, errs
    ok("no script errors in the browser console")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    d = browser()
    try:
        run(d)
    except Exception as e:  # noqa: BLE001 - every failure gets the report below
        print(f"FAIL {e}", flush=True)
        try:
            shot(d, "failure.png")
            print("browser log:", *[m["message"] for m in d.get_log("browser")], sep="\n  ")
        except Exception:  # noqa: BLE001 - the report must not hide the failure
            pass
        return 1
    finally:
        d.quit()
    print(f"console: {passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
