"""The staff console's test harness: the embedded platform on a free port in a background thread, a
headless Chromium from the system's packages (`chromium`, `chromium-driver`: no browser download) and
seed data posted through the public API. Used by `tests/e2e/test_console*.py` and by
`python -m tests.e2e.console_screenshots`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ADMIN_PASSWORD = "console-test-admin-password"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_browser() -> tuple[str, str]:
    """Chromium and its driver from the system's packages; an error (never a skip) when missing."""
    browser = os.environ.get("CRM_CHROMIUM") or next(
        (p for p in CHROMIUM_CANDIDATES if Path(p).exists()), None
    )
    driver = os.environ.get("CRM_CHROMEDRIVER") or next(
        (p for p in CHROMEDRIVER_CANDIDATES if Path(p).exists()), shutil.which("chromedriver")
    )
    if not browser or not driver:
        raise RuntimeError(
            "the console's browser tests need Chromium and its driver: apt-get install -y chromium "
            "chromium-driver (or set CRM_CHROMIUM and CRM_CHROMEDRIVER)"
        )
    return browser, driver


@dataclass
class Server:
    url: str
    token: str | None
    var_dir: Path
    _server: Any = field(repr=False, default=None)
    _thread: threading.Thread | None = field(repr=False, default=None)
    _saved_env: dict[str, str | None] = field(repr=False, default_factory=dict)

    def client(self) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        _restore(self._saved_env)


def _start(var_dir: Path, env: dict[str, str]) -> Server:
    import uvicorn

    from services.platform import build_platform

    # Settings are read when the apps are built and, for some, at request time: the variables stay set
    # while the platform runs, and are restored when it stops.
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app = build_platform(var_dir=var_dir, auth_enabled=True).gateway()
    except BaseException:
        _restore(saved)
        raise
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="crm-console-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the embedded platform did not start")
        time.sleep(0.05)
    return Server(
        url=f"http://127.0.0.1:{port}",
        token=None,
        var_dir=var_dir,
        _server=server,
        _thread=thread,
        _saved_env=saved,
    )


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _token(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{url}/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
        timeout=30,
    )


@contextlib.contextmanager
def running_platform() -> Iterator[Server]:
    """The embedded platform with authentication on and its bootstrap `admin` user, whose password
    comes from `CRM_ADMIN_PASSWORD`; `server.token` is the admin's, for seeding."""
    var_dir = Path(tempfile.mkdtemp(prefix="crm-console-"))
    env = {
        "CRM_AUTH_ENABLED": "true",
        "CRM_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "CRM_GATEWAY_RATE_LIMIT_ENABLED": "false",
    }
    server = _start(var_dir, env)
    try:
        response = _token(server.url, "admin", ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        server.token = response.json()["access_token"]
        yield server
    finally:
        server.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


def create_user(server: Server, username: str, password: str, roles: list[str]) -> None:
    with server.client() as api:
        response = api.post(
            "/api/admin/users", json={"username": username, "password": password, "roles": roles}
        )
        assert response.status_code in (200, 201), response.text


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Seed:
    ana: dict[str, Any]
    ana_member: dict[str, Any]
    marta: dict[str, Any]
    review_id: str
    complaint_id: str
    reward_id: str


def seed(server: Server, *, extra_customers: int = 0) -> Seed:
    """Customers with purchases (points earned), a probable duplicate in the review queue, an open
    complaint and a reward, all through the public API."""
    now = datetime.now(UTC)
    with server.client() as api:

        def post(path: str, body: dict[str, Any], expect: tuple[int, ...] = (200, 201)) -> Any:
            response = api.post(path, json=body)
            assert response.status_code in expect, f"{path}: {response.status_code} {response.text}"
            return response.json()

        ana = post(
            "/api/identity/customers",
            {
                "given_name": "Ana",
                "family_name": "García",
                "email": "ana.garcia@example.com",
                "phone": "+34 600 123 456",
                "birth_date": "1985-04-12",
                "language": "es",
                "addresses": [
                    {"street": "Calle Mayor 1", "locality": "Madrid", "postcode": "28013", "country": "ES"}
                ],
                "source_system": "web",
                "source_id": "web-ana",
            },
        )["customer"]
        for n, (days, amount) in enumerate([(200, 8999), (90, 4550), (10, 12999)]):
            post(
                "/api/interactions/purchases",
                {
                    "customer_id": ana["id"],
                    "external_id": f"ANA-{n}",
                    "source_system": "shop",
                    "channel": "store" if n % 2 == 0 else "web",
                    "occurred_at": (now - timedelta(days=days)).isoformat(),
                    "currency": "EUR",
                    "lines": [
                        {"sku": f"SKU-{n}", "category": "shoes", "quantity": 1, "unit_price_minor": amount}
                    ],
                },
            )
        post(
            "/api/interactions/interactions",
            {
                "customer_id": ana["id"],
                "channel": "phone",
                "direction": "inbound",
                "kind": "inquiry",
                "summary": "Asked about opening hours",
                "occurred_at": (now - timedelta(days=3)).isoformat(),
            },
        )
        for i in range(extra_customers):
            other = post(
                "/api/identity/customers",
                {
                    "given_name": ["Olivia", "Lukas", "Léa", "James", "Carmen"][i % 5],
                    "family_name": ["Smith", "Müller", "Martin", "Jones", "López"][i % 5],
                    "email": f"customer{i}@example.com",
                    "source_system": "web",
                    "source_id": f"web-extra-{i}",
                },
            )["customer"]
            for n in range(i % 4):
                post(
                    "/api/interactions/purchases",
                    {
                        "customer_id": other["id"],
                        "external_id": f"X-{i}-{n}",
                        "source_system": "shop",
                        "channel": ["store", "web", "app"][n % 3],
                        "occurred_at": (now - timedelta(days=30 * (i + 1) + 20 * n)).isoformat(),
                        "currency": "EUR",
                        "lines": [
                            {
                                "sku": "SKU-X",
                                "category": "apparel",
                                "quantity": 1,
                                "unit_price_minor": 2500 + 1000 * i,
                            }
                        ],
                    },
                )

        marta = post(
            "/api/identity/customers",
            {
                "given_name": "Marta",
                "family_name": "Ruiz",
                "email": "marta.ruiz@example.es",
                "addresses": [{"postcode": "08001", "country": "ES"}],
                "source_system": "web",
                "source_id": "web-marta",
            },
        )["customer"]
        maybe = post(
            "/api/identity/records",
            {
                "source_system": "pos",
                "source_id": "till-77",
                "given_name": "Marta",
                "family_name": "Ruiz",
                "addresses": [{"postcode": "08001", "country": "ES"}],
            },
        )
        assert maybe["match"]["outcome"] == "review", maybe["match"]
        review_id = maybe["match"]["review_id"]

        complaint = post(
            "/api/interactions/complaints",
            {
                "customer_id": ana["id"],
                "channel": "phone",
                "priority": "high",
                "category": "delivery",
                "subject": "Parcel arrived damaged",
                "description": "The box was crushed and the shoes scuffed.",
            },
        )

        def member() -> dict[str, Any] | None:
            response = api.get(f"/api/loyalty/members/{ana['id']}/memberships")
            if response.status_code != 200:
                return None
            found = [m for m in response.json() if m["program_id"] == "default"]
            if found and found[0]["balances"]["available"] >= 200:
                return dict(found[0])
            return None

        ana_member = wait_for(member, what="Ana's points from her purchases")
        # The default program exists once the first purchase was earned on.
        reward = post(
            "/api/loyalty/programs/default/rewards",
            {
                "kind": "voucher",
                "name": "Coffee voucher",
                "cost_points": 50,
                "stock": 20,
                "terms": "One per visit.",
                "blackout_dates": [{"from": f"{now.year}-12-24", "until": f"{now.year}-12-26"}],
            },
        )

        response = api.post("/api/segmentation/value/recompute")
        assert response.status_code == 200, response.text
    return Seed(
        ana=ana,
        ana_member=ana_member,
        marta=marta,
        review_id=review_id,
        complaint_id=complaint["id"],
        reward_id=reward["id"],
    )


def browser(width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver = find_browser()
    options = Options()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-GB",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@contextlib.contextmanager
def checked_browser(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """`browser()`, quit afterwards; errors in its console fail the test. Refused requests (a 422 the
    page shows, say) are the browser's network log, not errors of the console."""
    chrome = browser(width, height)
    try:
        yield chrome
    finally:
        severe = [
            e for e in chrome.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"
        ]
        chrome.quit()
        assert not severe, f"errors in the browser console: {severe}"


def sign_in(driver: Any, server: Server, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{server.url}/console/")
    wait = WebDriverWait(driver, 20)
    wait.until(ec.visibility_of_element_located((By.NAME, "username"))).send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "signed-in-as"), username))
