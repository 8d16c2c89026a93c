"""The app's page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), as a person uses it:
upload a photo, press the button, read the counts and look at the annotated photo. Screenshots are saved
in the test's tmp dir (the path is printed; run pytest with -s to see it).
"""
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.test_app import PHOTO, STACK_TRACE_WORDS, closed_port, running_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]
# 1400 px wide: the photo and the results side by side, as on a laptop.
VIEWPORT = {"width": 1400, "height": 1300}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    # The file input exists once Gradio's frontend has rendered the photo component.
    page.wait_for_selector("#trouble-photo input[type=file]", state="attached", timeout=30_000)
    return page


def analyse_photo(page, photo: Path | str, threshold=None):
    """photo: a file to upload, or the label of one of the page's example photos to click."""
    if isinstance(photo, Path):
        page.set_input_files("#trouble-photo input[type=file]", str(photo))
    else:
        page.get_by_text(photo, exact=True).click()
    page.wait_for_selector("#trouble-photo img", timeout=30_000)  # the photo is shown
    if threshold is not None:
        # Typed into the slider's number box, as a user does (Settings are open from the start).
        number_box = page.locator("#trouble-threshold input[type=number]")
        number_box.fill(str(threshold))
        number_box.press("Enter")
        expect(page.locator("#trouble-threshold input[type=range]")).to_have_value(str(threshold), timeout=10_000)
        # Moving the threshold ticks "one threshold for every type" by itself.
        expect(page.locator("#trouble-one-threshold input[type=checkbox]")).to_be_checked(timeout=10_000)
    page.click("#trouble-run")
    # The status line ends up with either the result or the message (meanwhile Gradio shows its
    # progress, "queue: 1/1 | 0.1s", in the same place).
    page.wait_for_function(
        """() => { const text = document.querySelector('#trouble-status')?.innerText || '';
                   return text.includes('Answered by') || text.includes('Could not analyse'); }""",
        timeout=90_000)


def test_upload_shows_boxes_counts_and_grade(smoke_mar, browser, tmp_path):
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        page = open_page(browser, url)
        mode_line = page.inner_text("#trouble-mode")
        assert "the model trouble.mar, run in this process" in mode_line  # its name, not the server's folders
        assert str(smoke_mar.parent) not in mode_line
        analyse_photo(page, PHOTO, threshold=0.1)
        page.wait_for_selector("#trouble-counts :text('Total')", timeout=30_000)
        status = page.inner_text("#trouble-status")
        counts = page.inner_text("#trouble-counts")
        severity = page.inner_text("#trouble-severity")
        legend = page.inner_text("#trouble-legend")
        # The annotated photo is really displayed: an <img> that has loaded, at a visible size.
        image_size = page.eval_on_selector(
            "#trouble-annotated img", "img => [img.complete, img.naturalWidth, img.naturalHeight, img.width]")
        # No corner button shares the patient's photo (Gradio's "share" posts it to a Space's discussions).
        corner_buttons = page.eval_on_selector_all(
            "#trouble-annotated button, #trouble-photo button",
            "buttons => buttons.map(b => (b.getAttribute('aria-label') || '') + ' ' + (b.title || ''))")
        # Help text readable (Gradio's own grey was 1.9:1 on white) and a visible keyboard focus.
        info_colour = page.eval_on_selector("#trouble-tta .info-text", "e => getComputedStyle(e).color")
        page.mouse.move(0, 0)  # off the button: its colours, not its hover colours (after their transition)
        page.wait_for_timeout(1000)
        button_colours = page.eval_on_selector(
            "#trouble-run", "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]")
        # While it runs it is disabled: Gradio faded it to 2.5:1 ("Analysing…" was hard to read).
        running_colours = page.eval_on_selector("#trouble-run", """async e => { e.disabled = true;
            await new Promise(done => setTimeout(done, 1000));  // after the colour's transition
            const style = getComputedStyle(e), colours = [style.color, style.backgroundColor, style.opacity];
            e.disabled = false; return colours; }""")
        # The button under the photo and its examples, above the settings (on a phone, screens nearer).
        button_above_settings = (page.locator("#trouble-run").bounding_box()["y"]
                                 < page.locator("#trouble-one-threshold").bounding_box()["y"])
        page.focus("#trouble-run")
        focus_outline = page.eval_on_selector("#trouble-run", "e => getComputedStyle(e).outlineWidth")
        screenshot = tmp_path / "app-result.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"\nscreenshot: {screenshot}")
        # A setting changed after the answer: the grade is marked too (on a phone the status is far above it).
        page.locator("#trouble-tta").get_by_text("On", exact=True).click()
        expect(page.locator("#trouble-severity")).to_contain_text("Settings changed since this answer",
                                                                  timeout=10_000)
        expect(page.locator("#trouble-status")).to_contain_text("Settings changed since this answer", timeout=10_000)
        # Put back: the answer is again that of the page's settings.
        page.locator("#trouble-tta").get_by_text("The model's setting", exact=True).click()
        expect(page.locator("#trouble-status")).not_to_contain_text("Settings changed", timeout=10_000)
        expect(page.locator("#trouble-severity")).not_to_contain_text("Settings changed", timeout=10_000)
        expect(page.locator("#trouble-severity")).to_contain_text("Severity: grade", timeout=10_000)
        # "Off" by hand is what the model's setting was (the answer says so): the same analysis, unmarked.
        page.locator("#trouble-tta").get_by_text("On", exact=True).click()
        expect(page.locator("#trouble-status")).to_contain_text("Settings changed since this answer", timeout=10_000)
        page.locator("#trouble-tta").get_by_text("Off", exact=True).click()
        expect(page.locator("#trouble-status")).not_to_contain_text("Settings changed", timeout=10_000)
        # Another photo: the last one's grade and counts must not stay beside it.
        page.get_by_text("ACNE04 photo, grade 0: 1 lesion marked", exact=True).click()
        expect(page.locator("#trouble-severity")).to_have_text("", timeout=30_000)
        expect(page.locator("#trouble-status")).to_have_text("", timeout=30_000)
        page.close()

    assert "Answered by" in status and "local model" in status and "0.10" in status
    assert "Settings changed since this answer" not in status  # made with the settings shown
    for name in ("comedone", "papule", "pustule", "Total"):
        assert name in counts
        if name != "Total":
            assert f"{name}:" in legend
    total = int(counts.split("Total")[1].split()[0])
    assert total > 0, "the smoke model finds boxes at threshold 0.1 on this photo"
    assert "Severity: grade" in severity and "Hayashi" in severity and "grade 3 very severe (over 50)" in severity
    assert corner_buttons and not any("share" in label.lower() for label in corner_buttons), corner_buttons
    assert info_colour == "rgb(75, 75, 85)", info_colour
    assert focus_outline == "3px", focus_outline
    assert button_colours == ["rgb(255, 255, 255)", "rgb(194, 65, 12)"], button_colours  # 5.2:1, not 3.6:1
    assert running_colours == ["rgb(255, 255, 255)", "rgb(124, 45, 18)", "1"], running_colours  # 9:1
    # Which photo, and which model: its version and the day it was archived.
    assert PHOTO.name in status
    assert "with the model trouble 1.0, archived 20" in status, status
    assert button_above_settings
    complete, natural_width, natural_height, shown_width = image_size
    assert complete and natural_width == 640 and natural_height > 640 and shown_width > 200
    assert not any(word in status + counts + severity for word in STACK_TRACE_WORDS)


def test_on_a_phone_the_answer_and_a_refused_file_come_into_view_and_take_the_focus(smoke_mar, browser, tmp_path):
    """On a phone the status line sits a screen below the button: after an answer, or a file refused
    as soon as it was chosen, nothing new was in view, and the keyboard focus fell to the page."""
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(url)
        page.wait_for_selector("#trouble-photo input[type=file]", state="attached", timeout=30_000)
        expect(page.locator("#trouble-status")).to_have_attribute("role", "status", timeout=30_000)
        in_view = """() => { const box = document.querySelector('#trouble-status').getBoundingClientRect();
                             return box.top >= 0 && box.top < window.innerHeight; }"""
        assert not page.evaluate(in_view)  # below the settings, out of view, before anything is shown
        analyse_photo(page, "ACNE04 photo, grade 0: 1 lesion marked")
        page.wait_for_function(in_view, timeout=10_000)
        page.wait_for_function("() => document.activeElement?.id === 'trouble-status'", timeout=10_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.set_input_files("#trouble-photo input[type=file]", str(fake))
        expect(page.locator("#trouble-status")).to_contain_text("not a readable image", timeout=30_000)
        page.wait_for_function(in_view, timeout=10_000)
        page.close()


def test_server_down_page_says_so(browser, tmp_path):
    api_url = f"http://127.0.0.1:{closed_port()}"
    with running_app(tmp_path / "app.log", TROUBLE_MODE="server", TROUBLE_API_URL=api_url) as url:
        page = open_page(browser, url)
        # On load the page already tells that the server is down.
        page.wait_for_function(
            "() => document.querySelector('#trouble-mode').innerText.includes('not answering')", timeout=30_000)
        analyse_photo(page, "ACNE04 photo, grade 2: 22 lesions marked")  # an example this time
        status = page.inner_text("#trouble-status")
        body = page.inner_text("body")
        screenshot = tmp_path / "app-server-down.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"\nscreenshot: {screenshot}")
        page.close()
    assert "Could not analyse the photo" in status and "is not answering" in status and api_url in status
    assert not any(word in body for word in STACK_TRACE_WORDS)
    assert "Error" not in body  # no Gradio error toast either


def test_a_file_that_is_no_photo_is_named_as_soon_as_it_is_chosen(smoke_mar, browser, tmp_path):
    """A text file named .jpg passes the page's image/* filter, and a file over the app's limit Gradio's
    own: the app says what is wrong with each at once, not only after the button is pressed; a real
    photo chosen next clears the message."""
    fake, large = tmp_path / "notes.jpg", tmp_path / "scan.png"
    fake.write_text("not a photo")
    with open(large, "wb") as f:  # over the app's 20 MB, under Gradio's own 64 MB
        f.truncate(21 * 1024 * 1024)
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        page = open_page(browser, url)
        # Too large: said in the status line, where it stays (Gradio's own notice would pass).
        page.set_input_files("#trouble-photo input[type=file]", str(large))
        expect(page.locator("#trouble-status")).to_contain_text("The photo is 22.0 MB; the limit is 20 MB",
                                                                timeout=60_000)
        page.set_input_files("#trouble-photo input[type=file]", str(fake))
        expect(page.locator("#trouble-status")).to_contain_text("not a readable image", timeout=30_000)
        status = page.inner_text("#trouble-status")
        page.get_by_text("ACNE04 photo, grade 0: 1 lesion marked", exact=True).click()
        expect(page.locator("#trouble-status")).to_have_text("", timeout=30_000)
        # After an example, the same file is named too: Gradio's example click had replaced the
        # page's photo field with a plain one, whose own reading gave a bare "Error" everywhere.
        page.set_input_files("#trouble-photo input[type=file]", str(fake))
        expect(page.locator("#trouble-status")).to_contain_text("not a readable image", timeout=30_000)
        page.close()
    assert status.startswith("Could not analyse the photo.")
    assert not any(word in status for word in STACK_TRACE_WORDS)
    assert "UnidentifiedImageError" not in (tmp_path / "app.log").read_text()


def test_heic_upload_from_an_iphone_is_shown_and_analysed(smoke_mar, browser, tmp_path):
    """Chromium cannot show a HEIC: the photo box shows a JPEG preview of it (it was a broken picture),
    while the analysis reads the HEIC itself, at its full size and under its own name. Sent as the
    image/heic type browsers on a Mac give such a file: Gradio's page takes only files with an image/
    type, and Playwright's own type table has none for .heic."""
    import io

    from PIL import Image

    heic = io.BytesIO()  # larger than the preview's 2048 px: the answer's size tells which file it read
    Image.open(PHOTO).resize((2400, 2400)).save(heic, "HEIF", quality=95)
    upload = {"name": "IMG_0001.HEIC", "mimeType": "image/heic", "buffer": heic.getvalue()}
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        page = open_page(browser, url)
        page.set_input_files("#trouble-photo input[type=file]", files=[upload])
        page.wait_for_function("() => { const img = document.querySelector('#trouble-photo img');"
                               " return img && img.complete && img.naturalWidth > 0; }", timeout=30_000)
        preview_width = page.eval_on_selector("#trouble-photo img", "img => img.naturalWidth")
        page.click("#trouble-run")
        page.wait_for_selector("#trouble-counts :text('Total')", timeout=90_000)
        status = page.inner_text("#trouble-status")
        image_size = page.eval_on_selector("#trouble-annotated img", "img => [img.complete, img.naturalWidth]")
        body = page.inner_text("body")
        page.close()
    assert preview_width == 2048
    assert "IMG_0001.HEIC" in status, status
    assert "Answered by" in status and "Photo 2400x2400 px" in status, status
    assert image_size == [True, 2048]
    assert not any(word in body for word in STACK_TRACE_WORDS) and "Error" not in body


def test_an_answer_for_the_previous_photo_is_never_shown_beside_a_new_one(smoke_mar, browser, tmp_path):
    """A photo is chosen while the last one is still being analysed: when that analysis ends, its
    grade and counts must not appear beside the new photo. The slow analysis is a real one: a
    1500x2000 photo in 160 px slices (193 model passes, within the model's 200; about 7 s)."""
    from PIL import Image

    slow = tmp_path / "slow_photo.jpg"
    Image.open(PHOTO).convert("RGB").resize((1500, 2000)).save(slow, quality=90)
    log = tmp_path / "app.log"
    with running_app(log, TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        page = open_page(browser, url)
        page.set_input_files("#trouble-photo input[type=file]", str(slow))
        page.wait_for_selector("#trouble-photo img", timeout=30_000)
        page.locator("#trouble-sliced").get_by_text("On", exact=True).click()
        size_box = page.locator("#trouble-slice-size input[type=number]")
        size_box.fill("160")
        size_box.press("Enter")
        expect(page.locator("#trouble-slice-size input[type=range]")).to_have_value("160", timeout=10_000)
        page.click("#trouble-run")
        page.wait_for_function(  # running: Gradio's timer ("2.1s") in the status line
            "() => /\\d+\\.\\ds/.test(document.querySelector('#trouble-status')?.innerText || '')", timeout=30_000)
        # The button says it is running, and takes no second click meanwhile.
        expect(page.locator("#trouble-run")).to_have_text("Analysing…")
        expect(page.locator("#trouble-run")).to_be_disabled()
        page.get_by_text("ACNE04 photo, grade 0: 1 lesion marked", exact=True).click()  # another photo, mid-analysis
        deadline = time.monotonic() + 240
        while "analysed a 1500x2000 photo" not in log.read_text():
            assert time.monotonic() < deadline, f"the slow analysis did not end:\n{log.read_text()[-2000:]}"
            time.sleep(0.5)
        page.wait_for_timeout(2000)  # time for the answer to reach the page, if it were going to
        stale_status = page.inner_text("#trouble-status")
        stale_counts = page.inner_text("#trouble-counts")
        stale_image = page.locator("#trouble-annotated img").count()
        expect(page.locator("#trouble-run")).to_have_text("Find troubles")
        page.click("#trouble-run")  # the new photo's own analysis is still shown
        page.wait_for_selector("#trouble-counts :text('Total')", timeout=90_000)
        status = page.inner_text("#trouble-status")
        json_name = page.inner_text("#trouble-json")
        page.close()
    assert "Answered by" not in stale_status and "Total" not in stale_counts and stale_image == 0, stale_status
    assert "The analysis of the photo before was dropped" in stale_status, stale_status  # not an empty page
    assert "Answered by" in status and "levle0_113" in json_name, json_name


def test_the_top_line_follows_a_server_that_stops(smoke_mar, browser, tmp_path):
    """"It is up", asked once when the page loaded, stayed beside a status line saying that the server
    was not answering: the line is asked again after each analysis."""
    from tests.conftest import start_torchserve, stop_torchserve, wait_for_model

    server = start_torchserve(smoke_mar.parent, tmp_path / "ts")
    try:
        wait_for_model(server)
        with running_app(tmp_path / "app.log", TROUBLE_MODE="server", TROUBLE_API_URL=server["inference"]) as url:
            page = open_page(browser, url)
            expect(page.locator("#trouble-mode")).to_contain_text("It is up", timeout=30_000)
            stop_torchserve(server)
            deadline = time.monotonic() + 60  # --stop returns before the server has let go of its port
            while time.monotonic() < deadline:
                try:
                    requests.get(f"{server['inference']}/ping", timeout=2)
                except requests.ConnectionError:
                    break
                time.sleep(0.5)
            analyse_photo(page, PHOTO)
            assert "is not answering" in page.inner_text("#trouble-status")
            expect(page.locator("#trouble-mode")).to_contain_text("not answering", timeout=30_000)
            assert "It is up" not in page.inner_text("#trouble-mode")
            page.close()
    finally:
        stop_torchserve(server)
