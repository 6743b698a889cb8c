"""gradio_server.py in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium."""

from __future__ import annotations

import pytest

from hyvideo.testing.webui import Page, browser_missing, new_browser

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


@pytest.fixture
def page(ui_server):
    driver = new_browser()
    try:
        yield Page(driver, ui_server.url)
    finally:
        driver.quit()


def test_page_generates_a_playable_video_and_shows_errors(page):
    # an invalid input: an error message in the page, and the page keeps working
    page.set_prompt("")
    result = page.generate(timeout=60)
    assert "the prompt is empty" in result.get("error", ""), result

    page.set_prompt("A red ball bounces on the grass.")
    page.pick("resolution", "64px")
    page.pick("aspect", "16:9")
    assert "64 x 112" in page.wait_text("#size", "64 x 112")
    result = page.generate(timeout=180)
    assert "video" in result, result
    v = page.play()
    assert v["error"] is None and (v["width"], v["height"]) == (112, 64)
    assert abs(v["duration"] - 9 / 24) < 0.05  # 9 frames at 24 fps
    assert v["currentTime"] > 0 or v["readyState"] >= 2  # it played
    rows = [r.text for r in page.d.find_elements(page.By.CSS_SELECTOR, '#history [role="row"].virtual-row')]
    assert len(rows) == 1 and "64x112" in rows[0], rows  # this session's history

    assert "9 frames at 64x112" in page.wait_text("#result", "9 frames at 64x112")

    # another size: the next job succeeds too
    page.pick("resolution", "128px")
    page.pick("aspect", "1:1")
    result = page.generate(timeout=180)
    assert "video" in result, result
    assert (result["video"]["width"], result["video"]["height"]) == (128, 128)
    # a history row brings its video back into the player
    page.css('#history [data-testid="cell-0-2"]').click()
    page.wait(30).until(lambda _: (page.video() or {}).get("width") == 112)
    # offline: the page asked nothing of any host but the server
    assert page.requested_hosts() <= {"127.0.0.1"}, page.requested_hosts()
