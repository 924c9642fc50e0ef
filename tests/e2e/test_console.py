"""The staff console in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
never downloaded) against the embedded platform on a free port, with data seeded through the API.

Missing Chromium is an error, not a skip: CI installs it (`.ci/run`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.console_support import (
    Seed,
    Server,
    checked_browser,
    create_user,
    running_platform,
    seed,
    sign_in,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.auth]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_platform() as running:
        yield running


@pytest.fixture(scope="module")
def data(server: Server) -> Seed:
    return seed(server)


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    with checked_browser() as chrome:
        yield chrome


def wait(driver: WebDriver, seconds: float = 20) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, seconds)


def text_in(driver: WebDriver, css: str, text: str) -> None:
    try:
        wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
    except TimeoutException:
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]
        raise AssertionError(f"{text!r} not shown in {css}; shown: {shown}") from None


def click(driver: WebDriver, by: str, value: str) -> Any:
    element = wait(driver).until(ec.element_to_be_clickable((by, value)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()
    return element


def h1(driver: WebDriver, text: str) -> None:
    text_in(driver, "main h1", text)


def test_sign_in_and_out(server: Server, driver: WebDriver) -> None:
    driver.get(f"{server.url}/console")  # redirects to /console/
    h1(driver, "Sign in")
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("not the password", Keys.ENTER)
    text_in(driver, "form.signin [role=alert]", "Sign-in failed")
    assert not driver.find_elements(By.ID, "sign-out")
    driver.find_element(By.NAME, "username").clear()
    driver.find_element(By.NAME, "password").clear()
    sign_in(driver, server)
    text_in(driver, "#signed-in-as", "Administrator")
    nav = driver.find_element(By.ID, "nav").text
    for item in ("Customers", "Merge review", "Complaints", "Segments", "Loyalty", "Dashboards"):
        assert item in nav
    click(driver, By.ID, "sign-out")
    h1(driver, "Sign in")
    assert not driver.find_elements(By.ID, "sign-out")


def test_find_a_customer_and_open_the_360(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Customers")
    h1(driver, "Customers")
    driver.find_element(By.NAME, "q").send_keys("ana garcia", Keys.ENTER)
    text_in(driver, "#search-results", "Ana García")
    # By e-mail too.
    email = driver.find_element(By.NAME, "email")
    driver.find_element(By.NAME, "q").clear()
    email.send_keys("ana.garcia@example.com", Keys.ENTER)
    text_in(driver, "#search-results", "ana.garcia@example.com")
    click(driver, By.LINK_TEXT, "Ana García")
    h1(driver, "Ana García")
    text_in(driver, "#sec-profile", "ana.garcia@example.com")
    text_in(driver, "#sec-profile", "loyalty_card")
    text_in(driver, "#sec-value", "Value tier")
    text_in(driver, "#sec-value", "Risk:")
    text_in(driver, "#sec-value", "Loyalty ladder")
    text_in(driver, "#sec-lineage", "web-ana")
    text_in(driver, "#sec-loyalty", "Points available")
    points = int(driver.find_element(By.CSS_SELECTOR, "#sec-loyalty .points").text.replace(",", ""))
    assert points == data.ana_member["balances"]["available"]
    text_in(driver, "#sec-complaints", "Parcel arrived damaged")
    text_in(driver, "#sec-timeline", "purchase")
    text_in(driver, "#sec-timeline", "Asked about opening hours")


def test_resolve_a_merge_candidate_then_unmerge(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Merge review")
    h1(driver, "Merge review")
    text_in(driver, "table.reviews", "Marta Ruiz ↔ Marta Ruiz")
    click(driver, By.PARTIAL_LINK_TEXT, "Marta Ruiz ↔")
    h1(driver, "Review a probable duplicate")
    compare = driver.find_element(By.CSS_SELECTOR, "table.compare").text
    assert "Match score" in compare
    assert "Family name" in compare
    assert "exact" in compare
    assert "08001" in compare
    driver.find_element(By.NAME, "reason").send_keys("same person, seen at the till")
    click(driver, By.CSS_SELECTOR, "form.decision button[name=merge]")
    text_in(driver, "form.decision .success", "Merged into one customer")
    click(driver, By.LINK_TEXT, "Open the merged customer")
    h1(driver, "Marta Ruiz")
    text_in(driver, "#sec-lineage", "2 source record(s)")
    text_in(driver, "#sec-lineage", "same person, seen at the till")
    # Undo it.
    click(driver, By.XPATH, "//section[@id='sec-lineage']//button[normalize-space()='Unmerge']")
    wait(driver).until(ec.alert_is_present()).accept()
    text_in(driver, "#sec-lineage", "undone")
    text_in(driver, "#sec-lineage", "1 source record(s)")


def test_move_a_complaint_through_its_lifecycle(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Complaints")
    h1(driver, "Complaints")
    text_in(driver, "table.complaints", "Parcel arrived damaged")
    queue = driver.find_element(By.CSS_SELECTOR, "table.complaints").text
    assert "in " in queue  # an SLA timer ("in 3 h 59 min")
    click(driver, By.LINK_TEXT, "Parcel arrived damaged")
    h1(driver, "Parcel arrived damaged")
    text_in(driver, "#complaint-status", "opened")

    owner = driver.find_element(By.CSS_SELECTOR, "form.assign-form [name=owner_id]")
    owner.clear()
    owner.send_keys("agent-lucia")
    click(driver, By.CSS_SELECTOR, "form.assign-form button[type=submit]")
    text_in(driver, "#complaint-owner", "agent-lucia")

    for label, status in (("Acknowledge", "acknowledged"), ("Start work", "in progress")):
        click(
            driver, By.XPATH, f"//form[contains(@class,'status-form')]//button[normalize-space()='{label}']"
        )
        text_in(driver, "#complaint-status", status)

    driver.find_element(By.CSS_SELECTOR, "form.message-form textarea[name=text]").send_keys(
        "We are sending a new pair today."
    )
    click(driver, By.CSS_SELECTOR, "form.message-form button[type=submit]")
    text_in(driver, "ol.history", "We are sending a new pair today.")

    click(driver, By.XPATH, "//form[contains(@class,'status-form')]//button[normalize-space()='Resolve']")
    text_in(driver, "#complaint-status", "resolved")

    # Closing needs the customer's agreement: without it the API's problem detail is shown.
    click(driver, By.XPATH, "//form[contains(@class,'status-form')]//button[normalize-space()='Close']")
    text_in(driver, "form.status-form [role=alert]", "customer")
    click(driver, By.ID, "customer-agreed")
    click(driver, By.XPATH, "//form[contains(@class,'status-form')]//button[normalize-space()='Close']")
    text_in(driver, "#complaint-status", "closed")
    history = driver.find_element(By.CSS_SELECTOR, "ol.history").text
    for step in ("assigned", "acknowledged", "in progress", "resolved", "closed"):
        assert step in history, history


def test_create_a_segment_and_see_its_count(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Segments")
    h1(driver, "Segments")
    click(driver, By.ID, "new-segment")
    h1(driver, "Build a segment")
    driver.find_element(By.NAME, "name").send_keys("Repeat buyers")
    Select(driver.find_element(By.CSS_SELECTOR, "fieldset.condition select[name=field]")).select_by_value(
        "purchase_count"
    )
    Select(driver.find_element(By.CSS_SELECTOR, "fieldset.condition select[name=op]")).select_by_value(">=")
    driver.find_element(By.CSS_SELECTOR, "fieldset.condition input[name=value]").send_keys("3")
    click(driver, By.ID, "preview-button")
    text_in(driver, "#preview-count", "1")
    text_in(driver, "#segment-preview", "Ana García")  # the sample, by name
    click(driver, By.CSS_SELECTOR, "form.segment-builder button[type=submit]")
    h1(driver, "Repeat buyers")
    text_in(driver, "#segment-count", "1")
    text_in(driver, "main", "Membership over time")
    # From the recorded history: members per day, and the backfill's entry today.
    wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#segment-history svg.chart")))
    text_in(driver, "#segment-history", "Entries and exits per day")
    Select(driver.find_element(By.ID, "segment-history-interval")).select_by_value("month")
    text_in(driver, "#segment-history", "Members at the end of each month")
    wait(driver).until(lambda d: d.switch_to.active_element.get_attribute("id") == "segment-history-interval")


def test_redeem_a_reward_for_a_member(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    driver.get(f"{server.url}/console/#/customers/{data.ana['id']}")
    h1(driver, "Ana García")
    text_in(driver, "#sec-loyalty", "Redeem a reward")
    before = int(
        wait(driver)
        .until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#sec-loyalty .points")))
        .text.replace(",", "")
    )
    Select(
        wait(driver).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "form.redeem-form select[name=reward_id]"))
        )
    ).select_by_value(data.reward_id)
    click(driver, By.CSS_SELECTOR, "form.redeem-form button[type=submit]")
    text_in(driver, "form.redeem-form .success", "Voucher code")
    assert driver.find_element(By.CSS_SELECTOR, "form.redeem-form .voucher").text.strip() not in ("", "—")
    wait(driver).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#sec-loyalty .points").text.replace(",", "") == str(before - 50)
        )
    )
    text_in(driver, "#sec-loyalty table.transactions", "reserve")

    # The catalogue shows the stock left.
    click(driver, By.LINK_TEXT, "Loyalty")
    wait(driver).until(lambda d: "Loyalty" in d.title)
    if driver.find_elements(By.LINK_TEXT, "Loyalty program"):
        click(driver, By.LINK_TEXT, "Loyalty program")
    text_in(driver, "table.rewards", "Coffee voucher")
    text_in(driver, "table.rewards", "19 left")
    text_in(driver, "table.rewards", "Dec 24")


def test_dashboards_draw_charts(server: Server, data: Seed, driver: WebDriver) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Dashboards")
    h1(driver, "Dashboards")
    for section in ("dash-cohorts", "dash-rfm", "dash-ladder", "dash-matrix", "dash-liability"):
        wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#{section} svg.chart")))
    text_in(driver, "#dash-sla", "opened")
    assert not driver.find_elements(By.CSS_SELECTOR, ".chart-card [role=alert]")


def test_roles_hide_what_they_cannot_do(server: Server, data: Seed, driver: WebDriver) -> None:
    create_user(server, "olga", "analyst-password-1", ["analyst"])
    create_user(server, "sam", "support-password-1", ["support"])
    sign_in(driver, server, "olga", "analyst-password-1")
    nav = driver.find_element(By.ID, "nav").text
    assert "Dashboards" in nav
    assert "Segments" in nav
    for hidden in ("Customers", "Merge review", "Complaints"):
        assert hidden not in nav
    click(driver, By.LINK_TEXT, "Segments")
    h1(driver, "Segments")
    assert not driver.find_elements(By.ID, "new-segment")  # analysts read segments, do not build them
    driver.get(f"{server.url}/console/#/customers/{data.ana['id']}")
    h1(driver, "Not allowed")
    click(driver, By.ID, "sign-out")

    sign_in(driver, server, "sam", "support-password-1")
    nav = driver.find_element(By.ID, "nav").text
    assert "Complaints" in nav
    assert "Customers" in nav
    assert "Merge review" not in nav  # merging is the administrators'
    assert "Dashboards" not in nav  # aggregate analytics are not a support role's
    driver.get(f"{server.url}/console/#/customers/{data.ana['id']}")
    h1(driver, "Ana García")
    text_in(driver, "#sec-loyalty", "Adjust points")
    assert not driver.find_elements(By.XPATH, "//button[normalize-space()='Unmerge']")


def test_branch_limited_support_sees_an_explanation_not_a_refusal(
    server: Server, data: Seed, driver: WebDriver
) -> None:
    with server.client() as api:
        created = api.post(
            "/api/admin/users",
            json={
                "username": "bea",
                "password": "branch-password-1",
                "roles": ["support"],
                "branch": "MAD-01",
            },
        )
        assert created.status_code == 201, created.text
    sign_in(driver, server, "bea", "branch-password-1")
    click(driver, By.LINK_TEXT, "Complaints")
    h1(driver, "Complaints")
    text_in(driver, "main .branch-limited", "Your account is limited to branch MAD-01")
    text_in(driver, "main .branch-limited", "Open a customer of your branch to see their complaints")
    assert not driver.find_elements(By.CSS_SELECTOR, "main .error-box")
    click(driver, By.LINK_TEXT, "find a customer")
    h1(driver, "Customers")
