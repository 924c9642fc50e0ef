"""Screenshots of the staff console's main pages, for the README: `python -m tests.e2e.console_screenshots`.

Starts the embedded platform (temporary data, authentication on), seeds it through the API, signs in
as the bootstrap admin in headless Chromium and saves one PNG per page under `docs/console/`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tests.e2e.console_support import browser, running_platform, seed, sign_in

PAGES: list[tuple[str, str, str]] = [
    # (file name, hash route, text to wait for in <main>)
    ("search", "#/customers?q=ana", "customer(s) found"),
    ("customer-360", "#/customers/{ana}", "Timeline"),
    ("merge-review", "#/reviews/{review}", "Match score"),
    ("complaints", "#/complaints", "most urgent first"),
    ("complaint", "#/complaints/{complaint}", "History"),
    ("segments", "#/segments/new", "Customers who match"),
    ("segment", "#/segments/{segment}", "Membership over time"),
    ("loyalty", "#/loyalty/default", "Coffee voucher"),
    ("dashboards", "#/dashboards", "Points liability"),
]


def _wait_text(driver: Any, text: str, timeout: float = 20) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(ec.text_to_be_present_in_element((By.ID, "main"), text))


def _full_height(driver: Any, width: int, limit: int = 2400) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(int(height) + 20, 800), limit))


def capture(out: Path, width: int = 1280) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with running_platform() as server:
        data = seed(server, extra_customers=14)
        driver = browser(width, 900)
        try:
            driver.get(f"{server.url}/console/")
            _wait_text(driver, "Staff accounts only")
            driver.find_element("name", "username").send_keys("admin")
            path = out / "sign-in.png"
            driver.save_screenshot(str(path))
            saved.append(path)
            sign_in(driver, server)
            with server.client() as api:  # a saved segment, for its members and membership over time
                created = api.post(
                    "/api/segmentation/segments",
                    json={
                        "name": "Buyers",
                        "rule": {"field": "purchase_count", "op": ">=", "value": 1},
                    },
                )
                created.raise_for_status()
            ids = {
                "ana": data.ana["id"],
                "review": data.review_id,
                "complaint": data.complaint_id,
                "segment": created.json()["segment"]["id"],
            }
            for name, route, marker in PAGES:
                driver.set_window_size(width, 900)
                driver.get(f"{server.url}/console/{route.format(**ids)}")
                _wait_text(driver, marker)
                if name == "segments":
                    _build_segment_preview(driver)
                time.sleep(1.0)  # the last parts (charts, timelines) settle
                _full_height(driver, width)
                time.sleep(0.3)
                path = out / f"{name}.png"
                driver.save_screenshot(str(path))
                saved.append(path)
        finally:
            driver.quit()
    return saved


def _build_segment_preview(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.find_element(By.NAME, "name").send_keys("Repeat buyers")
    Select(driver.find_element(By.CSS_SELECTOR, "fieldset.condition select[name=field]")).select_by_value(
        "purchase_count"
    )
    driver.find_element(By.CSS_SELECTOR, "fieldset.condition input[name=value]").send_keys("2")
    driver.find_element(By.ID, "preview-button").click()
    _wait_text(driver, "customer(s) match now")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    for path in capture(args.out, args.width):
        print(path)


if __name__ == "__main__":
    main()
