"""The staff console's access promises, checked in headless Chromium rather than by eye:

* readable at 200% zoom: the browser window's CSS viewport halved (what 200% zoom does to a
  1280×900 window: 640×450 CSS pixels at device scale 2), every main page reflows — nothing wider
  than the viewport except inside the tables' own scroll boxes, the navigation still reachable;
* usable by keyboard: sign-in, navigation and a search done with Tab and Enter alone, with a visible
  focus indicator and a skip link;
* sessions: an access token the gateway refuses (expired, or its key rotated away) is refreshed once
  with the refresh token and the page loads; a refresh the gateway refuses too ends the session on
  the sign-in page with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.console_support import (
    ADMIN_PASSWORD,
    Seed,
    Server,
    checked_browser,
    running_platform,
    seed,
    sign_in,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.auth]

STORE = "crm-console-session"


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


def h1(driver: WebDriver, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), text))


def loaded(driver: WebDriver) -> None:
    """The page has finished rendering: no loading placeholder left in main."""
    wait(driver).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "main .loading"))


def zoom_200(driver: WebDriver) -> None:
    driver.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Emulation.setDeviceMetricsOverride",
        {"width": 640, "height": 450, "deviceScaleFactor": 2, "mobile": False},
    )


OVERFLOW = """
const limit = document.documentElement.clientWidth + 1;
const inScrollBox = (el) => {
  for (let p = el.parentElement; p; p = p.parentElement) {
    const style = getComputedStyle(p);
    if (["auto", "scroll"].includes(style.overflowX) && p.clientWidth <= limit) return true;
  }
  return false;
};
const offenders = [];
for (const el of document.querySelectorAll("body *")) {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) continue;
  if (box.right > limit && !inScrollBox(el)) {
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    const cls = typeof el.className === "string" ? el.className : "";
    const classes = cls ? "." + cls.split(" ").join(".") : "";
    offenders.push(`${name}${classes} right=${Math.round(box.right)}`);
  }
}
return {
  viewport: document.documentElement.clientWidth,
  scrollWidth: document.documentElement.scrollWidth,
  offenders: offenders.slice(0, 10),
};
"""


def assert_reflows(driver: WebDriver, page: str) -> None:
    result: dict[str, Any] = driver.execute_script(OVERFLOW)
    assert result["viewport"] <= 640, result  # the emulated zoom is in force
    assert result["scrollWidth"] <= result["viewport"] + 1, f"{page} scrolls sideways at 200%: {result}"
    assert not result["offenders"], f"{page}: content cut off at 200% zoom: {result['offenders']}"


def test_every_main_page_reflows_at_200_percent_zoom(server: Server, data: Seed, driver: WebDriver) -> None:
    zoom_200(driver)
    sign_in(driver, server)
    assert_reflows(driver, "start page")
    # The check sees content that does not fit (so its silence below means something).
    driver.execute_script(
        "const d = document.createElement('div'); d.id = 'too-wide'; d.style.width = '900px';"
        "d.textContent = 'x'; document.querySelector('main').append(d);"
    )
    with pytest.raises(AssertionError, match=r"too-wide|sideways"):
        assert_reflows(driver, "with a 900px block")
    driver.execute_script("document.getElementById('too-wide').remove()")
    pages = [
        ("#/customers?q=ana", "Customers"),
        (f"#/customers/{data.ana['id']}", "Ana García"),
        ("#/reviews", "Merge review"),
        ("#/complaints", "Complaints"),
        ("#/segments", "Segments"),
        ("#/loyalty", "Loyalty"),
        ("#/dashboards", "Dashboards"),
    ]
    for fragment, title in pages:
        driver.get(f"{server.url}/console/{fragment}")
        h1(driver, title)
        loaded(driver)
        assert_reflows(driver, fragment)
        # The navigation is still there to use: every link on screen, none pushed out of reach.
        links = driver.find_elements(By.CSS_SELECTOR, "#nav a")
        assert links, fragment
        assert all(link.is_displayed() for link in links), fragment


def test_sign_in_navigate_and_search_by_keyboard_alone(server: Server, data: Seed, driver: WebDriver) -> None:
    driver.get(f"{server.url}/console/")
    wait(driver).until(ec.visibility_of_element_located((By.NAME, "username")))

    def tab_to(predicate: Any, limit: int = 40) -> Any:
        for _ in range(limit):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            element = driver.switch_to.active_element
            if predicate(element):
                return element
        raise AssertionError("never reached by Tab")

    focused = driver.switch_to.active_element
    if focused.get_attribute("name") != "username":  # the sign-in form takes the focus, or is a Tab away
        focused = tab_to(lambda e: e.get_attribute("name") == "username")
    focused.send_keys("admin")
    tab_to(lambda e: e.get_attribute("name") == "password").send_keys(ADMIN_PASSWORD, Keys.ENTER)
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, "signed-in-as"), "admin"))

    # The skip link is the Tab stop before the navigation, shown while focused, and takes the focus
    # past the navigation to the page's content.
    first_link = driver.find_element(By.CSS_SELECTOR, "#nav a")
    driver.execute_script("arguments[0].focus()", first_link)
    first_link.send_keys(Keys.SHIFT, Keys.TAB)
    skip = driver.switch_to.active_element
    assert skip.get_attribute("class") == "skip-link", skip.get_attribute("outerHTML")
    assert skip.is_displayed(), "the skip link shows when focused"
    assert skip.rect["y"] >= 0, "the skip link shows on screen when focused"
    skip.send_keys(Keys.ENTER)
    assert driver.switch_to.active_element.get_attribute("id") == "main"
    driver.execute_script("arguments[0].focus()", skip)

    link = tab_to(lambda e: e.tag_name == "a" and e.text.strip() == "Customers")
    outline = driver.execute_script(
        "const s = getComputedStyle(arguments[0]); return [s.outlineStyle, s.outlineWidth, s.boxShadow];",
        link,
    )
    assert outline[0] != "none" or outline[2] != "none", f"no visible focus indicator: {outline}"
    link.send_keys(Keys.ENTER)
    h1(driver, "Customers")
    field = tab_to(lambda e: e.get_attribute("name") == "q")
    field.send_keys("ana garcia", Keys.ENTER)
    result = wait(driver).until(ec.presence_of_element_located((By.PARTIAL_LINK_TEXT, "Ana García")))
    tab_to(lambda e: e == result).send_keys(Keys.ENTER)
    h1(driver, "Ana García")


def _session(driver: WebDriver) -> dict[str, Any]:
    stored = driver.execute_script(f"return JSON.parse(sessionStorage.getItem('{STORE}'))")
    assert isinstance(stored, dict), stored
    return stored


def _replace(driver: WebDriver, **fields: str) -> None:
    stored = _session(driver)
    stored.update(fields)
    driver.execute_script(f"sessionStorage.setItem('{STORE}', JSON.stringify(arguments[0]))", stored)


# A well-formed token signed with a key the gateway never published: refused with 401 like an expired one.
FOREIGN_TOKEN = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Im5vdC1hLWtleSIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhZG1pbiIsInJvbGVzIjpbImFkbWluIl0sImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJlLXRoYXQtZG9lcy1ub3QtdmVyaWZ5LWF0LWFsbC1ieS1hbnkta2V5LWF0LWFsbA"
)


def test_a_refused_access_token_is_refreshed_once_and_the_page_loads(
    server: Server, data: Seed, driver: WebDriver
) -> None:
    sign_in(driver, server)
    before = _session(driver)
    assert before.get("refresh"), "the password flow hands the console a refresh token"
    _replace(driver, access=FOREIGN_TOKEN)
    driver.get(f"{server.url}/console/#/customers/{data.ana['id']}")
    driver.refresh()  # the module reads the session from storage on load
    h1(driver, "Ana García")
    after = _session(driver)
    assert after["access"] not in (FOREIGN_TOKEN, before["access"]), "a new access token was issued"
    assert "admin" in driver.find_element(By.ID, "signed-in-as").text


def test_a_refused_refresh_ends_the_session_on_the_sign_in_page(
    server: Server, data: Seed, driver: WebDriver
) -> None:
    sign_in(driver, server)
    _replace(driver, access=FOREIGN_TOKEN, refresh="not-a-refresh-token")
    driver.get(f"{server.url}/console/#/customers/{data.ana['id']}")
    driver.refresh()
    wait(driver).until(ec.visibility_of_element_located((By.NAME, "username")))
    assert "#/signin" in driver.current_url
    assert driver.execute_script(f"return sessionStorage.getItem('{STORE}')") is None
    assert (
        not driver.find_elements(By.ID, "signed-in-as")
        or not driver.find_element(By.ID, "signed-in-as").text.strip()
    )
