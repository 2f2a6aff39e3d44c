"""The web inbox in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium): what a reviewer does, clicked and typed as they would.

Selenium's calls block, so each runs in a thread while the server answers on the test's
event loop. Screenshots of the queue and of a case page are kept in
`$SIGNOFF_TEST_ARTIFACTS` (default `build/test-artifacts`). Where Chromium is not
installed the tests skip, except under CI (`SIGNOFF_TEST_BROWSER=required`, as `.ci/run`
sets), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from adapters.memory import MemoryAdapter
from bot.protocols import Reviewer
from tests.conftest import case
from tests.webkit import Inbox, running_inbox

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("SIGNOFF_TEST_ARTIFACTS", "build/test-artifacts"))
T = TypeVar("T")

Driver = Any  # selenium's WebDriver: untyped enough that Any is honest here


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("SIGNOFF_TEST_BROWSER") == "required":
            pytest.fail(f"Chromium or its driver is missing ({CHROMIUM}, {DRIVER})")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    profile = tempfile.mkdtemp(prefix="signoff-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    browser.implicitly_wait(0)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def inbox(sqlite_url: str, memory: MemoryAdapter) -> AsyncIterator[Inbox]:
    async with running_inbox(sqlite_url, memory) as found:
        yield found


async def run(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(work, *args)


def wait_text(driver: Driver, text: str, seconds: float = 10) -> None:
    """Until the page says `text` (a page being replaced by the next one is read again)."""
    WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text
    )


def no_alert(driver: Driver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def sign_in(driver: Driver, base: str, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/inbox/login?token={token}")
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url == f"{base}/inbox/")


def shot(driver: Driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot at {path}"
    assert path.stat().st_size > 1000
    return path


async def test_a_reviewer_signs_in_and_decides_in_the_browser(inbox: Inbox, driver: Driver) -> None:
    evil = "<script>alert('x')</script> Refund <b>bold</b>"
    await inbox.api.submit(case(title=evil))
    made = await inbox.api.submit(case(title="Expense ER-2: offsite"))
    token = await inbox.link("carol@example.com")

    def queue() -> None:
        sign_in(driver, inbox.base, token)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Queue 2 open" in body
        assert evil in body  # shown as text, not run
        assert no_alert(driver)
        assert driver.find_elements(By.CSS_SELECTOR, ".case b") == []
        # the lane's colour comes from the stylesheet (the CSP refuses inline styles)
        card = driver.find_element(By.CSS_SELECTOR, ".case a")
        assert card.value_of_css_property("border-left-color") == "rgba(37, 99, 235, 1)"
        shot(driver, "queue.png")
        # the keyboard: ? lists the keys, j selects the first case, o opens it
        page = driver.find_element(By.TAG_NAME, "body")
        page.send_keys("?")
        assert driver.find_element(By.ID, "help").is_displayed()
        page.send_keys("?")
        page.send_keys("j")
        first = driver.find_elements(By.CSS_SELECTOR, "[data-item]")[0]
        assert "selected" in first.get_attribute("class")
        page.send_keys("o")
        WebDriverWait(driver, 10).until(lambda d: "/inbox/cases/" in d.current_url)

    await run(queue)

    def decide() -> None:
        driver.get(f"{inbox.base}/inbox/cases/{made['id']}")
        assert "Expense ER-2: offsite" in driver.title
        shot(driver, "case.png")
        driver.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        wait_text(driver, "Pick a reason code")
        Select(driver.find_element(By.ID, "reason_code")).select_by_value("policy_match")
        driver.find_element(By.ID, "reason").send_keys("Within the offsite budget.")
        driver.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        wait_text(driver, "You approved this case.")
        assert "by web:carol@example.com (policy_match)" in driver.page_source

    await run(decide)
    read = await inbox.api.get(f"/v1/escalations/{made['id']}")
    assert read.json()["status"] == "approved"

    def link_again() -> None:
        driver.delete_all_cookies()
        driver.get(f"{inbox.base}/inbox/login?token={token}")
        wait_text(driver, "This sign-in link cannot be used")
        assert driver.find_elements(By.ID, "signin") == []

    await run(link_again)


async def test_the_browser_refuses_what_the_rules_refuse(inbox: Inbox, driver: Driver) -> None:
    made = await inbox.api.submit()  # requested by dana@example.com
    url = f"{inbox.base}/inbox/cases/{made['id']}"
    bob, dana = await inbox.link("bob@example.com"), await inbox.link("dana@example.com")

    def force(value: str) -> None:
        """What a person could do with the browser's tools: enable the button anyway."""
        driver.execute_script(
            "document.querySelectorAll('#decide [disabled]')"
            ".forEach(function (e) { e.disabled = false; });"
        )
        Select(driver.find_element(By.ID, "reason_code")).select_by_value("policy_match")
        driver.find_element(By.CSS_SELECTOR, f"button[value={value}]").click()

    def refusals() -> None:
        sign_in(driver, inbox.base, bob)
        driver.get(url)
        wait_text(driver, "You are not an approver for the review lane")
        assert not driver.find_element(By.CSS_SELECTOR, "button[value=approve]").is_enabled()
        force("approve")
        wait_text(driver, "not an approver for the review lane")
        sign_in(driver, inbox.base, dana)
        driver.get(url)
        wait_text(driver, "You requested this case")
        assert not driver.find_element(By.CSS_SELECTOR, "button[value=approve]").is_enabled()
        assert driver.find_element(By.CSS_SELECTOR, "button[value=reject]").is_enabled()
        force("approve")
        wait_text(driver, "cannot approve it yourself")
        # a form without the session's CSRF token, posted from the page itself
        driver.get(url)
        driver.execute_script(
            "var f = document.createElement('form'); f.method = 'post';"
            f"f.action = '{url}';"
            "var a = document.createElement('input'); a.name = 'action'; a.value = 'reject';"
            "f.appendChild(a); document.body.appendChild(f); f.submit();"
        )
        wait_text(driver, "nothing was done")

    await run(refusals)
    assert (await inbox.api.get(f"/v1/escalations/{made['id']}")).json()["status"] == "pending"
    async with inbox.runtime.engine.connect() as conn:
        from sqlalchemy import func, select

        from bot.store.tables import decisions

        count = (await conn.execute(select(func.count()).select_from(decisions))).scalar_one()
    assert count == 0


async def test_a_decision_in_chat_appears_on_the_open_page(inbox: Inbox, driver: Driver) -> None:
    made = await inbox.api.submit()
    token = await inbox.link("carol@example.com")

    def open_case() -> None:
        sign_in(driver, inbox.base, token)
        driver.get(f"{inbox.base}/inbox/cases/{made['id']}")
        assert driver.find_elements(By.ID, "decide")

    await run(open_case)
    await inbox.runtime.service.decide(
        made["id"], Reviewer("memory", "U0ALICE"), "approve", "policy_match"
    )
    # the page polls every 2 s and reloads itself (nothing was typed)
    await run(wait_text, driver, "by memory:U0ALICE (policy_match)", 15)
    assert not await run(driver.find_elements, By.ID, "decide")


async def test_the_report_page_shows_its_charts_on_a_phone(inbox: Inbox, driver: Driver) -> None:
    token = await inbox.link("mona@example.com")

    def report() -> None:
        sign_in(driver, inbox.base, token)
        driver.set_window_size(390, 844)
        try:
            driver.get(f"{inbox.base}/inbox/report?week=2026-W48")
            images = driver.find_elements(By.CSS_SELECTOR, ".charts img")
            assert len(images) == 2
            for image in images:
                width = driver.execute_script("return arguments[0].naturalWidth", image)
                assert width > 100
                assert image.size["width"] <= 390  # fits the phone's screen
            wide = driver.execute_script("return document.documentElement.scrollWidth")
            assert wide <= 400
            shot(driver, "report-phone.png")
        finally:
            driver.set_window_size(1200, 900)

    await run(report)


async def test_single_sign_on_in_the_browser(
    sqlite_url: str, memory: MemoryAdapter, driver: Driver
) -> None:
    from tests.test_web_oidc import provider, sso_inbox

    with provider() as idp:
        idp.user("alice-1", email="alice@example.com", email_verified=True)
        async with sso_inbox(sqlite_url, memory, idp) as inbox:
            made = await inbox.api.submit()

            def through_the_provider() -> None:
                driver.delete_all_cookies()
                driver.get(f"{inbox.base}/inbox/cases/{made['id']}")
                # signed out: the sign-in page, then the provider's own page
                WebDriverWait(driver, 10).until(lambda d: "/inbox/signin" in d.current_url)
                driver.find_element(By.LINK_TEXT, "Sign in with single sign-on").click()
                WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(idp.issuer))
                driver.find_element(By.NAME, "sub").send_keys("alice-1")
                driver.find_element(By.XPATH, "//button[text()='Authorize']").click()
                # back at the case asked for, signed in
                WebDriverWait(driver, 10).until(
                    lambda d: d.current_url == f"{inbox.base}/inbox/cases/{made['id']}"
                )
                wait_text(driver, "alice@example.com")
                assert driver.find_elements(By.ID, "decide")

            await run(through_the_provider)
            async with inbox.runtime.engine.connect() as conn:
                from sqlalchemy import select

                from bot.store.tables import web_sessions

                found = (await conn.execute(select(web_sessions.c.method))).scalars().all()
            assert found == ["oidc"]
