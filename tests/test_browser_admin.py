"""The real admin in headless Chromium: a staff user lists instances, opens one, cancels a
Paused one with the list action and sees it Cancelled; a non-staff user is refused.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`, which
`.ci/run` does); nothing here downloads a browser. Without them the test is skipped.
Screenshots go to the test's tmp dir; with DW_UPDATE_SCREENSHOTS=1 the list and instance
pages are also written to docs/ for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from durable_workflows import start
from durable_workflows.models import WorkflowInstance
from tests.testapp import admin_workflows  # noqa: F401  (registers the workflows shown)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver",
    ),
]

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1360,900",
)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, css: str, timeout: float = 10):
    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def log_in(driver, base_url: str, username: str, password: str) -> None:
    driver.get(f"{base_url}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def screenshot(driver, tmp_path: Path, name: str, full_height: bool = False, docs: bool = False) -> Path:
    if full_height:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1360, min(max(height + 60, 900), 2400))
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    assert path.stat().st_size > 10_000
    if docs and os.environ.get("DW_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    if full_height:
        driver.set_window_size(1360, 900)
    return path


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("operator", password="op-secret", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_workflowinstance", "change_workflowinstance", "cancel_workflowinstance"]
    ))
    return user


def test_staff_lists_opens_and_cancels_a_paused_instance(browser, live_server, staff, tmp_path):
    start("orders.fulfil", "A-0997", "54.00", wait_seconds=0, instance_id="order-A-0997")
    start("orders.fulfil", "A-0998", "12.50", wait_seconds=0, card_ok=False, instance_id="order-A-0998")
    for number in ("0999", "1000", "1001"):
        start("orders.fulfil", f"A-{number}", instance_id=f"order-A-{number}")
    start("orders.fulfil", "A-1002", instance_id="order-A-1002")

    log_in(browser, live_server.url, "operator", "op-secret")
    wait_for(browser, "#user-tools")
    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
    wait_for(browser, "#result_list")
    # A narrower page reads better in the README: fold the app list away (remembered).
    browser.find_element(By.ID, "toggle-nav-sidebar").click()
    badges = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#result_list .dw-badge")]
    assert badges.count("Paused") == 4 and "Completed" in badges and "Failed" in badges
    counts = browser.find_element(By.CSS_SELECTOR, ".dw-counts").text
    assert "Paused 4" in counts and "Failed 1" in counts
    screenshot(browser, tmp_path, "admin-list.png", docs=True)

    browser.find_element(By.LINK_TEXT, "order-A-1000").click()
    wait_for(browser, "#dw-steps")
    page = browser.find_element(By.ID, "content").text
    assert "resumes in 3 h 12 min" in page
    steps = browser.find_elements(By.CSS_SELECTOR, "#dw-steps tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in steps] == [
        "Fetch order", "Reserve stock", "Wait for the warehouse",
    ]
    screenshot(browser, tmp_path, "admin-instance.png", full_height=True, docs=True)

    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
    wait_for(browser, "#result_list")
    row = browser.find_element(By.XPATH, "//tr[.//a[text()='order-A-1002']]")
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("cancel_selected")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = wait_for(browser, "ul.messagelist li.success")
    assert "Cancelled order-A-1002." in message.text
    row = browser.find_element(By.XPATH, "//tr[.//a[text()='order-A-1002']]")
    assert row.find_element(By.CSS_SELECTOR, ".dw-badge").text == "Cancelled"
    browser.find_element(By.LINK_TEXT, "order-A-1002").click()
    wait_for(browser, "#dw-steps")
    assert browser.find_element(By.CSS_SELECTOR, ".field-state_badge .dw-badge").text == "Cancelled"
    assert not browser.find_elements(By.ID, "dw-cancel")
    screenshot(browser, tmp_path, "admin-cancelled.png")
    assert WorkflowInstance.objects.get(pk="order-A-1002").state == "cancelled"


def test_a_non_staff_user_is_refused(browser, live_server, django_user_model, tmp_path):
    django_user_model.objects.create_user("customer", password="cu-secret")
    start("tests.nap", "1h", instance_id="not-for-customers")
    log_in(browser, live_server.url, "customer", "cu-secret")
    error = wait_for(browser, ".errornote")
    assert "staff account" in error.text
    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
    wait_for(browser, "#login-form")
    assert "/admin/login/" in browser.current_url
    assert "not-for-customers" not in browser.page_source
    screenshot(browser, tmp_path, "admin-refused.png")


def test_staff_reads_the_dashboard_and_an_instance_timeline(browser, live_server, staff, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from durable_workflows.models import StepRecord

    start("orders.fulfil", "A-0997", "54.00", wait_seconds=0, instance_id="order-A-0997")
    start("orders.fulfil", "A-0998", "12.50", wait_seconds=0, card_ok=False, instance_id="order-A-0998")
    for number in ("0999", "1000", "1001"):
        start("orders.fulfil", f"A-{number}", instance_id=f"order-A-{number}")
    # A step that took a while, and an instance whose worker is gone.
    StepRecord.objects.filter(instance_id="order-A-0997", position=0).update(
        started_at=timezone.now() - timedelta(seconds=95))
    WorkflowInstance.objects.filter(pk="order-A-1001").update(
        state="running", lease_owner="worker-7:4242:1", lease_expires_at=timezone.now() - timedelta(minutes=2))

    log_in(browser, live_server.url, "operator", "op-secret")
    wait_for(browser, "#user-tools")
    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
    wait_for(browser, "#result_list")
    browser.find_element(By.LINK_TEXT, "DASHBOARD").click()
    wait_for(browser, "#dw-hourly svg.dw-chart")
    assert browser.find_elements(By.CSS_SELECTOR, "#dw-hourly svg rect.dw-bar-starts")
    assert "order-A-1001" in browser.find_element(By.ID, "dw-stuck").text
    assert "Fetch order" in browser.find_element(By.ID, "dw-slowest").text
    screenshot(browser, tmp_path, "admin-dashboard.png", full_height=True, docs=True)

    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/order-A-0998/change/")
    wait_for(browser, "svg.dw-timeline-chart")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.dw-timeline-chart rect")
    assert {b.get_attribute("class") for b in bars} >= {"dw-bar-ok", "dw-bar-failed"}
    screenshot(browser, tmp_path, "admin-timeline.png", full_height=True, docs=True)


def _rect(element) -> dict:
    return element.parent.execute_script("return arguments[0].getBoundingClientRect().toJSON()", element)


def _overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def test_the_list_fits_narrow_windows(browser, live_server, staff, tmp_path):
    """At 1,400 px with the app list open every column is on screen, without scrolling the
    table; at 800 px the Dashboard button sits clear of the counts by state."""
    for _ in range(2):  # ids as the library makes them: 32 characters
        start("orders.fulfil", "A-1000")
    start("orders.fulfil", "A-0998", "12.50", wait_seconds=0, card_ok=False)
    log_in(browser, live_server.url, "operator", "op-secret")
    wait_for(browser, "#user-tools")

    browser.set_window_size(1400, 900)
    browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
    wait_for(browser, "#result_list")
    assert browser.find_element(By.ID, "nav-sidebar").is_displayed()
    screenshot(browser, tmp_path, "admin-list-1400.png")
    viewport = browser.execute_script("return document.documentElement.clientWidth")
    results = _rect(browser.find_element(By.CSS_SELECTOR, "#changelist .results"))
    headers = {th.text: _rect(th) for th in browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")}
    assert {"RESUMES", "ERROR TYPE"} <= set(headers)
    for name, rect in headers.items():
        assert rect["right"] <= min(viewport, results["right"]) + 1, (name, rect, results)
    error = [td for td in browser.find_elements(By.CSS_SELECTOR, "#result_list td.field-error_type")
             if td.text != "-"]
    assert [td.text for td in error] == ["ValueError"]
    assert _rect(error[0])["right"] <= min(viewport, results["right"]) + 1

    for width in (1400, 1024, 800):
        browser.set_window_size(width, 900)
        browser.get(f"{live_server.url}/admin/durable_workflows/workflowinstance/")
        wait_for(browser, "#result_list")
        button = _rect(browser.find_element(By.CSS_SELECTOR, ".object-tools li"))
        for badge in browser.find_elements(By.CSS_SELECTOR, ".dw-counts li"):
            assert not _overlap(button, _rect(badge)), (width, badge.text, button)
    screenshot(browser, tmp_path, "admin-list-800.png")
