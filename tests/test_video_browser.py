"""The Video tab in Debian's headless Chromium (Playwright): upload a clip the test makes, the annotated clip
plays (the video element gets a duration and its time advances), the people table and downloads appear; the
Photo tab's faces table downloads too."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from videoclips import EXAMPLES, two_people_clip

pytest_plugins = ["appserver"]

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000  # the clip is processed on a busy 2-core machine while the browser runs


@pytest.fixture(scope="module")
def page(app_url):
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: install Debian's chromium (see .ci/run)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def test_video_tab_plays_the_annotated_clip_and_shows_the_people(page, tmp_path):
    clip = two_people_clip(tmp_path / "street.mp4")
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(clip))
    table = page.locator("#people-table")
    expect(table.locator("[role=grid]")).to_have_attribute("aria-rowcount", "3", timeout=TIMEOUT_MS)  # 2 + header
    expect(table).to_contain_text("#2")
    expect(table).to_contain_text(re.compile(r"[FM] \d+%"))
    expect(page.locator("#video-status")).to_contain_text("2 people")
    expect(page.locator("#video-status")).to_contain_text("model in")  # the arithmetic it ran in
    expect(page.locator("#person-age-distribution svg.marks")).to_be_visible()  # the first person's age distribution
    for name in ("street.people.csv", "street.people.json", "street.frames.csv", "street.frames.json"):
        expect(page.locator("#video-downloads").get_by_role("cell", name=name)).to_be_visible()
    player = page.locator("#video-output video")
    expect(player).to_be_attached()
    page.wait_for_function("v => v && v.readyState >= 1 && v.duration > 2", arg=player.element_handle())
    player.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0.5", arg=player.element_handle())


def test_photo_tab_faces_table_downloads_as_csv_and_json(page):
    page.get_by_role("tab", name="Photo").click()
    page.locator("#photo-input input[type=file]").set_input_files(str(EXAMPLES / "three_portraits.jpg"))
    for name in ("faces.csv", "faces.json"):
        expect(page.locator("#faces-downloads").get_by_role("cell", name=name)).to_be_visible(timeout=TIMEOUT_MS)
