"""Who may do what in the console: a viewer is offered no control at all, and
a token that expires sends the person back to sign in."""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import expect

# Identities arrive with issue 11 (service.auth, tests/support/authkit.py); until they
# are on this branch there is no sign-in to test.
tokens = pytest.importorskip("service.auth.tokens", reason="authentication (issue 11) is not merged yet")

from ..support.authkit import ORG_A, As, auth_settings  # noqa: E402
from ..support.helpers import control, make_csv, start_import, wait_for, wait_for_state  # noqa: E402

LEEWAY_SECONDS = tokens.LEEWAY_SECONDS


async def sign_in(page, token: str) -> None:
    await page.get_by_label("API key or access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_viewer_is_offered_no_control_and_no_creation(serve, aiohttp_client, open_page, jwks, idp_key):
    server = await serve(**auth_settings(jwks.url))
    operator = As(await aiohttp_client(server), idp_key.mint("olga", org=ORG_A, roles=["operator"]))
    job = await start_import(operator, make_csv(20_000), batch_size=100)
    await wait_for(operator, job["id"], lambda j: j["progress"].get("processed", 0) > 0, what="rows")
    await control(operator, job["id"], "pause")
    await wait_for_state(operator, job["id"], "paused")

    page = await open_page(str(server.make_url("/")))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await sign_in(page, idp_key.mint("vera", org=ORG_A, roles=["viewer"], name="Vera Viewer"))

    card = page.locator(f'.job[data-job-id="{job["id"]}"]')
    await expect(card.locator(".state")).to_have_text("Paused")
    await expect(page.locator("#who")).to_contain_text("org org-a Vera Viewer (viewer)")
    await expect(card.get_by_role("button")).to_have_count(0)
    await expect(page.get_by_role("link", name=re.compile("^New "))).to_have_count(0)

    await card.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Import job")).to_be_visible()
    await expect(page.locator(".job").get_by_role("button")).to_have_count(0)
    # A creation form is not served to a viewer even by its address.
    await page.goto(str(server.make_url("/#/new/import")))
    await expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    await expect(page.get_by_label("CSV file")).to_have_count(0)

    await control(operator, job["id"], "terminate")
    await wait_for_state(operator, job["id"], "terminated")
    assert page.js_errors == []


async def test_a_token_that_expires_sends_the_person_back_to_sign_in_and_then_to_the_same_view(serve, open_page, jwks, idp_key):
    server = await serve(**auth_settings(jwks.url))
    page = await open_page(str(server.make_url("/#/jobs?kind=export")))

    await sign_in(page, "not-a-token")
    await expect(page.get_by_role("alert")).to_have_text("That key or token was not accepted.")

    # Valid for about ten more seconds, counting the service's clock-skew leeway.
    short = idp_key.mint("olga", org=ORG_A, roles=["operator"], exp=int(time.time()) - LEEWAY_SECONDS + 10)
    await sign_in(page, short)
    await expect(page.get_by_label("Kind")).to_have_value("export")
    assert await page.evaluate("sessionStorage.length") == 1

    # The list refreshes every 2 s; once the token has expired, the answer is 401.
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("alert")).to_have_text("Your sign-in has expired or was revoked. Sign in again.")
    assert await page.evaluate("sessionStorage.length") == 0

    await sign_in(page, idp_key.mint("olga", org=ORG_A, roles=["operator"]))
    await expect(page.get_by_label("Kind")).to_have_value("export")
    await expect(page.get_by_role("link", name="New import").first).to_be_visible()
    assert page.js_errors == []
