"""The page in a real browser: Debian's chromium, driven through chromium-driver, loads
it, sends a prompt, and waits for entity marks; with the trained pipeline the screenshot
goes to benchmarks/results/serve_page.png (the README shows it), with the tiny one to a
temporary folder.

Needs: apt-get install chromium chromium-driver; pip install -e .[browser]
With the trained CoNLL pipeline (training/conll2003/model-tuned) when it is there,
else the tiny random pipeline. Run with: python -m pytest -m slow tests/serve/test_browser.py
"""

import shutil
from pathlib import Path

import httpx
import pytest
import spacy

from ..helpers import tiny_pipeline
from .server import running

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
TRAINED = ROOT / "training" / "conll2003" / "model-tuned"
SCREENSHOT = ROOT / "benchmarks" / "results" / "serve_page.png"
PROMPT = "In two sentences: who is Angela Merkel, and what did she do in Berlin?"
HOW = "apt-get update && apt-get install -y chromium chromium-driver; pip install -e .[browser]"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"needs selenium: {HOW}")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(f"needs Debian's chromium and chromium-driver: {HOW}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,700"):
        options.add_argument(flag)
    # An explicit driver path: selenium never tries to download one.
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    yield session
    session.quit()


def test_page_marks_entities_as_they_stream(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    trained = TRAINED.is_dir()
    nlp = spacy.load(TRAINED) if trained else tiny_pipeline(reject_o=False, threshold=0.3)
    screenshot = SCREENSHOT if trained else tmp_path / SCREENSHOT.name
    with running(nlp, default_max_tokens=80) as (url, _):
        browser.get(f"{url}/")
        browser.find_element(By.ID, "prompt").send_keys(PROMPT)
        browser.find_element(By.ID, "send").click()
        wait = WebDriverWait(browser, 300, poll_frequency=0.05)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "mark.entity"))
        turn = browser.find_element(By.CSS_SELECTOR, ".turn")
        wait.until(lambda d: turn.get_attribute("data-done") == "true")
        marks = browser.execute_script(
            "return [...document.querySelectorAll('mark.entity')]"
            ".map(m => [m.dataset.label, m.firstChild.textContent]);"
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
        # The same request without streaming (greedy: the same text) has these entities.
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 80}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).json()
    answer = browser.find_element(By.CSS_SELECTOR, ".answer").text
    assert answer and screenshot.stat().st_size > 10_000
    assert [tuple(m) for m in marks] == [(e["label"], e["text"]) for e in reply["entities"]]
