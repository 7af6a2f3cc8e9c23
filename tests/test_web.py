"""The pages' security rules, without a browser: sign-in, CSRF, scopes, redirects."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from flowledger.web.pages import COOKIE


@pytest.fixture
def site(store_path):
    log = open_log(store_path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    secrets = {scope: keys.create_key(log.backend, scope, scope)[1] for scope in ("read", "admin")}
    log.close()
    with TestClient(create_app(store_path)) as client:
        yield client, secrets


def sign_in(client, key, next="/"):
    return client.post("/login", data={"api_key": key, "next": next}, follow_redirects=False)


def test_pages_need_a_signed_in_key(site):
    client, _ = site
    for path in ("/", "/runs", "/runs/run-0001", "/deliveries", "/workflows", "/workflows/win-back"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_sign_in_sets_an_httponly_samesite_cookie(site):
    client, secrets = site
    r = sign_in(client, secrets["read"], next="/runs?status=failed")
    assert r.status_code == 303 and r.headers["location"] == "/runs?status=failed"
    cookie = r.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert sign_in(client, "fl_live_wrong").status_code == 401


def test_no_open_redirect_after_sign_in(site):
    client, secrets = site
    for target in ("//evil.example/", "https://evil.example/"):
        assert sign_in(client, secrets["read"], next=target).headers["location"] == "/"


def test_a_read_key_gets_no_buttons_and_cannot_post(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    page = client.get("/runs/run-0054").text
    assert 'id="retry"' not in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "Only admin keys" in r.text


def test_state_changes_need_the_csrf_token(site):
    client, secrets = site
    sign_in(client, secrets["admin"])
    page = client.get("/runs/run-0054").text
    assert 'id="retry"' in page
    assert client.post("/runs/run-0054/retry", data={}, follow_redirects=False).status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/run-0054?done=retried"
    again = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert "refused=" in again.headers["location"]


def test_values_are_escaped(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    r = client.get("/runs", params={"recipient": '"><script>alert(1)</script>'})
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text


def test_unknown_run_is_a_404_page(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    r = client.get("/runs/nope")
    assert r.status_code == 404 and "no run" in r.text


def chip_counts(html):
    return {s: int(n) for s, n in re.findall(r'data-status="(\w+)">[^<]*<span class="count">(\d+)</span>', html)}


def add_events(client, secrets, events):
    r = client.post("/v1/events", json=events, headers={"X-API-Key": secrets["admin"]})
    assert r.status_code == 200, r.text


def failed(run_id, workflow="welcome-series"):
    return [
        {"id": f"{run_id}-1", "type": "run.triggered", "occurred_at": "2026-11-05T09:00:00Z", "run_id": run_id, "workflow": workflow, "recipient": "user-x"},
        {"id": f"{run_id}-2", "type": "run.failed", "occurred_at": "2026-11-05T09:01:00Z", "run_id": run_id, "error": "gave up"},
    ]


def test_ids_with_a_slash_link_to_their_pages(site):
    client, secrets = site
    add_events(client, secrets, failed("acme/run-1", workflow="team/onboarding"))
    sign_in(client, secrets["admin"])
    assert 'href="/runs/acme%2Frun-1"' in client.get("/runs").text
    page = client.get("/runs/acme%2Frun-1")
    assert page.status_code == 200 and "Run acme/run-1" in page.text
    assert 'href="/workflows/team%2Fonboarding"' in page.text and 'action="/runs/acme%2Frun-1/retry"' in page.text
    assert 'href="/workflows/team%2Fonboarding"' in client.get("/workflows").text
    assert client.get("/workflows/team%2Fonboarding").status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/runs/acme%2Frun-1/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/acme%2Frun-1?done=retried"
    r = client.post("/runs/acme%2Frun-1/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/runs/acme%2Frun-1?done=cancelled"


def test_after_a_command_an_id_with_hash_percent_or_question_mark_comes_back_to_its_page(site):
    client, secrets = site
    add_events(client, secrets, failed("a#b?c%d"))
    sign_in(client, secrets["admin"])
    page = client.get("/runs/a%23b%3Fc%25d")
    assert "Run a#b?c%d" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/runs/a%23b%3Fc%25d/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/runs/a%23b%3Fc%25d?done=retried"
    assert "The run was retried." in client.get(r.headers["location"]).text


def test_a_page_asked_for_signed_out_comes_back_to_itself(site):
    client, _ = site
    r = client.get("/runs/a%23b%25c", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2Fruns%2Fa%2523b%2525c"


def test_status_chips_count_with_the_contact_and_date_filters(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    one = client.get("/runs", params={"recipient": "user-0105"}).text
    assert one.count("<tr data-run=") == 1 and chip_counts(one)["all"] == 1
    never = {"range": "custom", "from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
    none = client.get("/runs", params=never).text
    assert "No runs match" in none and set(chip_counts(none).values()) == {0}
    both = client.get("/runs", params={"range": "custom", "from": "2026-11-03T00:00:00Z", "workflow": "password-reset"}).text
    listed = client.get("/runs", params={"range": "custom", "from": "2026-11-03T00:00:00Z", "workflow": "password-reset", "status": "failed"}).text
    assert chip_counts(both)["failed"] == listed.count("<tr data-run=")


def test_the_overviews_numbers_are_what_their_links_list(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    home = client.get("/").text
    card = int(re.search(r'href="/runs\?status=completed"><div class="n">(\d+)<', home).group(1))
    assert card == chip_counts(client.get("/runs?status=completed").text)["completed"]


def test_head_is_answered_where_get_is(site):
    client, secrets = site
    assert client.head("/login").status_code == 200
    sign_in(client, secrets["read"])
    r = client.head("/runs")
    assert r.status_code == 200 and r.content == b""
    assert client.post("/runs", follow_redirects=False).headers["allow"] == "GET, HEAD"


def test_sign_in_from_another_site_is_refused(site):
    client, secrets = site
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        r = client.post("/login", data={"api_key": secrets["read"]}, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers
    ok = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/login", data={"api_key": secrets["read"]}, headers=ok, follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_over_https(site):
    client, secrets = site
    assert "secure" not in sign_in(client, secrets["read"]).headers["set-cookie"].lower()
    r = client.post("https://testserver/login", data={"api_key": secrets["read"]}, follow_redirects=False)
    assert "secure" in r.headers["set-cookie"].lower()


def test_a_refusal_shows_a_fixed_message_never_text_from_the_url(site):
    client, secrets = site
    sign_in(client, secrets["admin"])
    assert "Call +1 555" not in client.get("/runs/run-0054", params={"refused": "Call +1 555 for help"}).text
    page = client.get("/runs/run-0054")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/runs/run-0054/retry", data={"csrf": csrf})
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf})
    assert "The run was not retried: only a failed run can be retried." in r.text


def test_a_retry_posted_after_the_session_ended_signs_in_back_to_the_run_s_page_and_does_nothing(site):
    """Retry pressed on a page left open past sign-out: to the sign-in page, then back to the
    run's page (not the command's address, no page to get), and the run is not retried."""
    client, secrets = site
    sign_in(client, secrets["admin"])
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/runs/run-0054").text).group(1)
    client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fruns%2Frun-0054"
    back = sign_in(client, secrets["admin"], next="/runs/run-0054")
    assert back.headers["location"] == "/runs/run-0054"
    page = client.get("/runs/run-0054")
    assert page.status_code == 200 and 'id="retry"' in page.text  # still failed: nothing was sent on
