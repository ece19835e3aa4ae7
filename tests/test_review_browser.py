"""The review pages, the linkage report and the tier list in a real browser (Chromium).

Playwright for Python drives the system Chromium (``/usr/bin/chromium``; ``.ci/run`` installs
it). Outside CI the tests are skipped, with the reason, when there is no Chromium; in CI
(``CI=true``) a missing browser is a failure. One server and one browser for the module;
screenshots are written under the module's temporary folder.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from sqlalchemy import select

from ipvi.db import make_engine, open_registry, session_scope
from ipvi.tables.linkage import review_pairs
from ipvi.tables.serving import audit_log
from serving.auth import add_key
from serving.launch import CHROMIUM, launch_chromium
from tests.cli_support import run_ipvi
from tests.serving_support import add_keys, champion_store, running_server, write_config

pytestmark = [pytest.mark.service, pytest.mark.browser]

IN_CI = os.environ.get("CI", "").lower() == "true"
PERSONS = 1000


def _playwright():
    """Playwright's sync API, or a skip (outside CI) naming what is missing."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (make venv installs it)"
    if problem is None and not CHROMIUM.exists():
        problem = f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A generated registry (ingested, linked, scored twice), its reports, the service on it,
    three keys and a browser."""
    sync_playwright = _playwright()
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    store = champion_store(tmp_path_factory.getbasetemp())
    config = write_config(folder, url)
    config.write_text(config.read_text() + f"training:\n  list_dir: {folder / 'lists'}\n")
    env = {
        "IPVI_DATABASE_URL": url,
        "IPVI_CONFIG": str(config),
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    data = folder / "extracts"
    run_ipvi(["generate", "--persons", str(PERSONS), "--seed", "5", "--out", str(data)], env)
    run_ipvi(["ingest", str(data)], env)
    run_ipvi(["link", "--no-link-index"], env)
    for as_of in ("2024-01-01", "2024-06-01"):
        run_ipvi(["score", "--all", "--as-of", as_of], env)
    run_ipvi(["link-report", "--html", str(folder / "report.html")], env)
    keys = add_keys(url, ["reviewer", "scoring"])
    engine = open_registry(url)
    with session_scope(engine) as session:
        keys["second"] = add_key(session, name="test-reviewer-2", role="reviewer")
    engine.dispose()
    shots = folder / "screenshots"
    shots.mkdir()
    with running_server(folder, store, url, key_cache_seconds=1) as server:
        time.sleep(1.5)  # the keys were added before the server read them; refresh once
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            yield {
                "folder": folder,
                "url": url,
                "server": server,
                "keys": keys,
                "browser": browser,
                "shots": shots,
                "lists": sorted((folder / "lists").glob("*.html")),
            }
            browser.close()


def _page(site, errors: list[str]):
    context = site["browser"].new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def _login(site, page, key: str) -> None:
    page.goto(f"{site['server'].url}/review/")
    assert page.url.endswith("/review/login")  # no session yet: the login form
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")


def _pair_row(site, pair_id: str):
    engine = make_engine(site["url"])
    with engine.connect() as connection:
        row = (
            connection.execute(select(review_pairs).where(review_pairs.c.pair_id == pair_id))
            .mappings()
            .one()
        )
    engine.dispose()
    return row


@pytest.fixture(scope="module")
def reviewer_page(site):
    errors: list[str] = []
    page = _page(site, errors)
    _login(site, page, site["keys"]["reviewer"])
    page.click("a[href='/review/queue/priority']")
    yield page, errors
    page.context.close()


def test_three_pairs_reviewed_by_keyboard_are_stored_and_a_reload_shows_the_next(
    site, reviewer_page
):
    page, errors = reviewer_page
    decided = []
    for key, decision in (("m", "match"), ("n", "non-match"), ("u", "unsure")):
        pair = page.text_content("#pair-id")
        decided.append((pair, decision))
        with page.expect_navigation():
            page.keyboard.press(key)
    page.screenshot(path=site["shots"] / "review-after-three.png", full_page=True)
    for pair, decision in decided:
        row = _pair_row(site, pair)
        assert (row["status"], row["decision"], row["reviewer"]) == (
            "decided",
            decision,
            "test-reviewer",
        )
    shown = page.text_content("#pair-id")
    page.reload()
    assert page.text_content("#pair-id") == shown  # the held pair, still undecided
    assert shown not in {pair for pair, _ in decided}
    assert _pair_row(site, shown)["status"] == "pending"
    assert re.search(r"3\s+decided", page.text_content("#progress"))
    assert not errors


def test_a_second_reviewer_gets_a_different_pair(site, reviewer_page):
    page, _ = reviewer_page
    errors: list[str] = []
    other = _page(site, errors)
    _login(site, other, site["keys"]["second"])
    other.click("a[href='/review/queue/priority']")
    assert other.text_content("#pair-id") != page.text_content("#pair-id")
    other.screenshot(path=site["shots"] / "second-reviewer.png")
    other.context.close()
    assert not errors


def test_a_form_post_without_the_csrf_token_is_refused(site, reviewer_page):
    page, _ = reviewer_page
    pair = page.text_content("#pair-id")
    # The session cookie goes with the request, as a forged cross-site form would send it.
    answer = page.request.post(
        f"{site['server'].url}/review/pair/{pair}",
        form={"decision": "match", "queue": "priority"},
        max_redirects=0,
    )
    assert answer.status == 403
    assert "CSRF" in answer.text()
    assert _pair_row(site, pair)["status"] == "pending"
    # The page's own form with its token removed is refused too.
    page.evaluate("document.querySelector('#decision-form input[name=csrf_token]').remove()")
    page.click("#btn-non-match")
    assert "CSRF" in page.text_content("#message")
    page.screenshot(path=site["shots"] / "csrf-refused.png")
    assert _pair_row(site, pair)["status"] == "pending"
    page.goto(f"{site['server'].url}/review/queue/priority")


def test_a_scoring_key_is_refused_in_the_form_and_as_a_bearer_header(site):
    errors: list[str] = []
    page = _page(site, errors)
    _login(site, page, site["keys"]["scoring"])
    assert "role 'scoring' may not use the review pages" in page.text_content("#message")
    answer = page.request.get(
        f"{site['server'].url}/review/queue/priority",
        headers={"Authorization": f"Bearer {site['keys']['scoring']}"},
    )
    assert answer.status == 403
    assert "Linkage review" not in answer.text() or "may not use" in answer.text()
    page.context.close()


def test_the_charts_render_and_the_console_stays_clean(site, reviewer_page):
    page, errors = reviewer_page
    errors.clear()  # the refused CSRF post before logged its 403 as a console error
    page.goto(f"{site['server'].url}/review/queue/priority")
    waterfall = page.locator("#waterfall svg")
    box = waterfall.bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    assert waterfall.locator("rect").count() >= 3
    report_errors: list[str] = []
    report = _page(site, report_errors)
    report.goto((site["folder"] / "report.html").as_uri())
    charts = report.locator("svg")
    assert charts.count() >= 4
    for k in range(charts.count()):
        chart = charts.nth(k)
        assert chart.bounding_box()["height"] > 20 and chart.locator("rect").count() > 0
    report.screenshot(path=site["shots"] / "linkage-report.png", full_page=True)
    report.context.close()
    assert not errors and not report_errors


def test_the_tier_list_sorts_filters_and_folds_record_ids(site):
    errors: list[str] = []
    page = _page(site, errors)
    page.goto(site["lists"][-1].as_uri())
    total = int(
        re.search(r"of ([\d,]+) persons", page.text_content("#count")).group(1).replace(",", "")
    )
    assert total > 100
    cells = page.locator("#rows td")
    texts = set(cells.all_text_contents())
    assert "True" not in texts and "False" not in texts and {"yes", "no"} & texts
    page.select_option("#f-tier", "B")
    tiers = page.locator("#rows tr td:nth-child(1)").all_text_contents()
    assert tiers and set(tiers) == {"B"}
    page.click("th button[data-sort=probability]")
    shown = [float(t) for t in page.locator("#rows tr td:nth-child(6)").all_text_contents()]
    assert shown == sorted(shown, reverse=True)
    page.click("th button[data-sort=probability]")
    shown = [float(t) for t in page.locator("#rows tr td:nth-child(6)").all_text_contents()]
    assert shown == sorted(shown)
    page.select_option("#f-tier", "")
    page.select_option("#f-flag", "none")
    assert set(page.locator("#rows tr td:nth-child(7)").all_text_contents()) == {""}
    page.select_option("#f-flag", "")
    person = page.locator("#rows tr td:nth-child(2)").first.text_content()
    page.fill("#f-person", person)
    assert page.locator("#rows tr").count() == 1
    details = page.locator("#rows tr details").first
    assert not details.locator(".ids").is_visible()
    details.locator("summary").click()
    assert re.search(r"[A-Z]{2}-\d+", details.locator(".ids").text_content())
    page.fill("#f-person", "")
    changes = page.text_content("#changes")
    assert "tier up" in changes and "new" in changes
    page.screenshot(path=site["shots"] / "tier-list.png")
    page.context.close()
    assert not errors


def test_review_requests_are_audited_with_the_reviewers_name_and_no_identifiers(
    site, reviewer_page
):
    page, _ = reviewer_page
    shown_names = set()
    for row in page.locator("#records tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_text_contents()]
        if cells and cells[0] in ("first name", "last name"):
            shown_names |= {cell for cell in cells[1:3] if len(cell) > 2 and cell != "withheld"}
    time.sleep(1.0)  # the audit spool reaches the database twice a second here
    engine = make_engine(site["url"])
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                audit_log.c.key_name,
                audit_log.c.endpoint,
                audit_log.c.outcome,
                audit_log.c.person_ids,
            ).where(audit_log.c.endpoint.like("%/review/%"))
        ).all()
    engine.dispose()
    decisions = [r for r in rows if r.outcome.startswith("review: match on")]
    assert decisions and decisions[0].key_name == "test-reviewer" and decisions[0].person_ids
    logged = " ".join(f"{r.endpoint} {r.outcome}" for r in rows)
    logged += site["server"].tail(10_000)
    assert shown_names and not any(
        re.search(rf"\b{re.escape(name)}\b", logged) for name in shown_names
    )


def test_scripts_get_json_and_clear_refusals_for_bad_decisions(site, reviewer_page):
    page, _ = reviewer_page
    base, key = site["server"].url, site["keys"]["second"]
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    shown = page.request.get(f"{base}/review/queue/sample", headers=headers).json()
    pair = shown["pair"]["pair_id"]
    assert shown["queue"] == "sample" and shown["progress"]["pending"] > 0
    shown_values = [r["values"] for r in shown["records"] if r]
    assert all(
        set(v) == {"first_name", "middle_name", "last_name", "suffix", "dob", "sex", "city", "zip"}
        for v in shown_values
    )
    bad = page.request.post(
        f"{base}/review/pair/{pair}", form={"decision": "maybe"}, headers=headers
    )
    assert bad.status == 422 and "decision" in bad.json()["error"]
    done = page.request.post(
        f"{base}/review/pair/{pair}",
        form={"decision": "match", "queue": "sample"},
        headers=headers,
    )
    assert done.status == 200 and done.json()["recorded"] is True
    again = page.request.post(
        f"{base}/review/pair/{pair}",
        form={"decision": "match", "queue": "sample"},
        headers=headers,
    )
    assert again.status == 409 and "already decided" in again.json()["error"]
    assert _pair_row(site, pair)["reviewer"] == "test-reviewer-2"
