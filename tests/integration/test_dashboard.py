"""The dashboard at / in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium; `make install` runs scripts/browser.sh, which installs them), against a real cluster.

Set YADTQ_DASHBOARD_SCREENSHOT=PATH to save the overview of a busy cluster there (docs/dashboard.png
is made so).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from client import TaskFailed, TaskSpec
from tests.integration.conftest import KAFKA
from tests.integration.test_insight import http_port

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "s3cret"
WAIT = 30.0  # seconds any page state may take to show (the page polls every 1.5 s)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra: make install")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium, closed (with every process it started) after the test."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        msg = f"{' and '.join(missing)} missing: run scripts/browser.sh (make install does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, check: Callable[[Any], Any], what: str) -> Any:
    """The first truthy value of ``check(driver)`` within WAIT seconds (a page being redrawn is retried)."""
    def tolerant(d: Any) -> Any:
        try:
            return check(d)
        except StaleElementReferenceException:
            return False
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(tolerant, f"not within {WAIT:g}s: {what}")


def text_of(css: str) -> Callable[[Any], str]:
    """The text of the first element matching ``css`` ('' if none yet)."""
    def read(d: Any) -> str:
        found = d.find_elements(By.CSS_SELECTOR, css)
        return str(found[0].text) if found else ""
    return read


def listed(d: Any) -> list[str]:
    """The task ids of the task list, in its order."""
    return [str(e.get_attribute("data-id")) for e in d.find_elements(By.CSS_SELECTOR, "#tasks tr[data-id]")]


def shows(css: str, want: str) -> Callable[[Any], bool]:
    return lambda d: text_of(css)(d) == want


def test_the_dashboard_shows_the_cluster_and_retries_only_with_the_token(start_cluster: Any, browser: Any) -> None:
    cluster = start_cluster(count=2, http={"listen": "127.0.0.1:0", "token": TOKEN})
    base, c = f"http://127.0.0.1:{http_port(cluster)}/", cluster.client

    # The overview: both workers live.
    browser.get(base)
    wait_for(browser, shows("#workers-live .value", "2 / 2"), "the overview shows 2 of 2 workers live")
    assert "Healthy" in text_of("#health-text")(browser)

    # A task just submitted appears in the task list, with its status as it changes.
    browser.get(base + "#/tasks")
    running = c.submit("sleep", 3)
    row = f'tr[data-id="{running.id}"] td.status'
    wait_for(browser, shows(row, "processing"), "the submitted task is listed as processing")
    wait_for(browser, shows(row, "success"), "then as success")

    # A failed task: the retry button without the token is refused, and the record is unchanged.
    failed = c.submit_many([TaskSpec("flaky", (1,), max_retries=0)])[0]  # raises on its first run only
    with pytest.raises(TaskFailed):
        failed.result(timeout=30)
    before = failed.record()
    browser.get(base + f"#/task/{failed.id}")
    status = '#record dd[data-field="status"]'
    wait_for(browser, shows(status, "failed"), "the task's page shows it failed")
    assert "ConnectionError" in text_of("#traceback")(browser)
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="retry"]').click()
    refusal = wait_for(browser, text_of("#message"), "the refusal is shown")
    assert refusal.startswith("Refused (401)") and "needs the token" in refusal
    assert failed.record() == before

    # With the token: the same click runs it again, and the page shows its success.
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, shows("#mode", "actions on"), "the token is taken")
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="retry"]').click()
    wait_for(browser, lambda d: "retry: 1 of 1 done" in text_of("#message")(d), "the retry is accepted")
    wait_for(browser, shows(status, "success"), "the task's page shows it succeeded")
    record = failed.record()
    assert record["status"] == "success" and record["previous_status"] == "failed"
    assert record["reopened_by"].startswith("http from 127.0.0.1")
    assert failed.result(timeout=5) == 2

    # What a task carries is shown as text, never taken as markup.
    hostile, other = c.submit_many([TaskSpec("fail", ('<img id="injected" src="x">',), max_retries=0),
                                    TaskSpec("div", (1, 0), max_retries=0)])  # another name, failed too
    for h in (hostile, other):
        with pytest.raises(TaskFailed):
            h.result(timeout=30)
    browser.get(base + f"#/task/{hostile.id}")
    wait_for(browser, lambda d: '<img id="injected" src="x">' in text_of('#record dd[data-field="error"]')(d),
             "the error is shown as it is")
    browser.get(base + "#/failed")
    wait_for(browser, lambda d: hostile.id in text_of('tr[data-error-type="RuntimeError"]')(d),
             "the failed task is listed under its error type")
    assert browser.find_elements(By.ID, "injected") == []

    # The task list filtered by status and name, and a task found by its id.
    browser.get(base + "#/tasks?status=failed&name=fail")
    wait_for(browser, lambda d: listed(d) == [hostile.id], "only the failed task named fail is listed")
    browser.find_element(By.ID, "find-id").send_keys(running.id)
    browser.find_element(By.CSS_SELECTOR, "#find-form button").click()
    wait_for(browser, shows(status, "success"), "the task found by its id is shown")
    assert text_of('#record dd[data-field="task"]')(browser) == "sleep"

    # The overview of the cluster that ran them; a screenshot when asked for one.
    screenshot = os.environ.get("YADTQ_DASHBOARD_SCREENSHOT")
    browser.get(base)
    if screenshot:  # the chart draws what the page saw while open
        busy(c, seconds=60)
    wait_for(browser, lambda d: text_of("#done .value")(d) == str(c.redis.hget(c.keys.stats, "success")),
             "the overview counts the tasks that succeeded")
    if screenshot:
        slow = c.submit_many([TaskSpec("sleep", (4,)) for _ in range(6)])  # some load on the workers
        wait_for(browser, lambda d: all(int(e.text) > 0 for e in d.find_elements(By.CSS_SELECTOR, ".loadrow .n")),
                 "the workers have load")
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(screenshot)
        for h in slow:
            h.result(timeout=60)


def busy(c: Any, seconds: float) -> None:
    """Waves of tasks for ``seconds`` (some failing), so that the chart has something to show."""
    deadline, wave = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        wave += 1
        specs = [TaskSpec("sleep", (0.02 * (1 + i % 5),)) for i in range(20 + 15 * (wave % 4))]
        if wave % 3 == 0:
            specs.append(TaskSpec("fail", ("demo",), max_retries=0))
        for h in c.submit_many(specs):
            with contextlib.suppress(TaskFailed):
                h.result(timeout=60)


def confirm(driver: Any) -> None:
    """Accept the page's confirm() dialog (the buttons that act on many tasks, or end one, ask first)."""
    WebDriverWait(driver, WAIT).until(expected_conditions.alert_is_present(), "no confirm dialog").accept()


def test_the_dashboards_buttons_cancel_show_runs_retry_a_group_and_replay(start_cluster: Any, browser: Any) -> None:
    """With the token: Cancel stops a running task, a retried task's page lists its runs, Retry all
    runs a failed group again, and Replay sends a dead letter to TASKS again."""
    cluster = start_cluster(count=1, http={"listen": "127.0.0.1:0", "token": TOKEN})
    base, c = f"http://127.0.0.1:{http_port(cluster)}/", cluster.client
    browser.get(base)
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, shows("#mode", "actions on"), "the token is taken")

    # Cancel, on the page of a running task: it stops, and the record says who cancelled it.
    long = c.submit("sleep", 60)
    wait_for(browser, lambda d: long.status() == "processing", "the long task runs")
    browser.get(base + f"#/task/{long.id}")
    status = '#record dd[data-field="status"]'
    wait_for(browser, shows(status, "processing"), "its page shows it running")
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="cancel"]').click()
    confirm(browser)
    wait_for(browser, shows(status, "cancelled"), "its page shows it cancelled")
    assert long.record()["cancelled_by"].startswith("http from 127.0.0.1")

    # A task that raised once and then succeeded: its page lists both runs, from its history.
    twice = c.submit_many([TaskSpec("flaky", (1,), max_retries=1)])[0]
    assert twice.result(timeout=30) == 2
    browser.get(base + f"#/task/{twice.id}")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tr.run")) == 2, "two runs are listed")
    first, second = (r.text for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run"))
    assert "raised ConnectionError" in first and "ended success" in second

    # Retry all, on a group of failed tasks: each runs again (and fails again, as 'fail' does).
    group = c.submit_many([TaskSpec("fail", (f"group {i}",), max_retries=0) for i in range(3)])
    for h in group:
        with pytest.raises(TaskFailed):
            h.result(timeout=30)
    browser.get(base + "#/failed")
    button = 'tr[data-error-type="RuntimeError"] button[data-action="retry"]'
    wait_for(browser, lambda d: text_of(button)(d) == "Retry all 3", "the group of 3 failed tasks")
    browser.find_element(By.CSS_SELECTOR, button).click()
    confirm(browser)
    wait_for(browser, lambda d: "retry: 3 of 3 done" in text_of("#message")(d), "the retry of the group is accepted")
    wait_for(browser, lambda d: all(h.record().get("reopened") == "1" and h.status() == "failed" for h in group),
             "each task of the group ran again")

    # Replay, on a dead letter whose cause is gone: the task runs.
    prefix = cluster.config.redis.key_prefix
    c.redis.set(f"{prefix}taken", "another app's value")
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    producer.send(cluster.config.topics.tasks, b'{"task-id": "taken", "task": "add", "args": [2, 2]}')
    producer.flush(10)
    producer.close()
    browser.get(base + "#/dead")
    row = 'tr[data-letter] button[data-action="dead-letters/replay"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the dead letter is listed")
    assert "names an existing Redis key" in text_of("tr[data-letter]")(browser)
    c.redis.delete(f"{prefix}taken")
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_for(browser, lambda d: "1 of 1 done" in text_of("#message")(d), "the replay is accepted")
    assert c.result("taken", timeout=30) == 4
