"""``speechmapper demo`` in a subprocess on an export of the tiny models,
driven by Debian's headless Chromium through Selenium, as a person uses it:
the page loads nothing from outside; Run without audio shows the page's
error message; then upload an espeak wav, transcribe it, translate it into
a listed language and ask a question about it, and read each answer from the
page: it is what
:class:`SpeechMapperPipeline` answers for the same file (a separately loaded
reference).

The browser is a system package (``scripts/install_system_packages.sh``,
run by ``make setup``): without it the test fails and says how to install
it, it is not skipped."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.audio import has_espeak, synthesize_speech
from tests.support.cards import SessionCards
from tests.support.serving import (
    MAX_NEW_TOKENS,
    export_arguments,
    export_test_projector,
    reference_pipeline,
    serve,
)

pytestmark = pytest.mark.slow

INSTALL = "install them with `bash scripts/install_system_packages.sh` (as root, or with sudo; `make setup` runs it)"

QUESTION = "What does the fox do?"

WAIT_S = 90.0
"""The longest wait for the page or an answer (seconds; a loaded 2-core CI)."""


def _require_system_tools() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "The demo page's browser test needs Debian's `chromium` and `chromium-driver` "
            f"(found chromium: {chromium}, chromedriver: {driver}); {INSTALL}."
        )
    if not has_espeak():
        pytest.fail(
            f"The browser test speaks its audio with espeak-ng and sox; {INSTALL}."
        )
    return chromium, driver


@pytest.fixture(scope="module")
def system_tools() -> tuple[str, str]:
    """Chromium and chromedriver, checked before the server starts."""
    return _require_system_tools()


@pytest.fixture(scope="module")
def demo_url(
    system_tools: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    test_cards: SessionCards,
) -> Iterator[str]:
    """``speechmapper demo EXPORT`` until its page answers; stopped by pid."""
    root = tmp_path_factory.mktemp("demo_browser")
    export = export_test_projector(root / "export")
    with serve(
        *export_arguments(export, test_cards.card_dir),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        cwd=root,
        timeout=WAIT_S,
        module="speechmapper_plugin.demo",
        ready_path="/",
    ) as server:
        yield f"{server.url}/"


def test_upload_transcribe_translate_and_ask_in_chromium(
    system_tools: tuple[str, str],
    demo_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chromium, driver_path = system_tools
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import WebDriverWait

    wav = synthesize_speech(
        tmp_path / "fox.wav", "the quick brown fox jumps over the lazy dog"
    )
    reference = reference_pipeline()
    transcript = reference.transcribe(wav)
    translation = reference.translate(wav, "fr")
    reply = reference.answer(wav, QUESTION)
    # Each step waits for its own answer: they must differ from each other
    # and from nothing.
    answers = [transcript, translation, reply]
    assert all(answers) and len(set(answers)) == 3, answers

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    wait = WebDriverWait(browser, WAIT_S)

    def answer() -> str:
        return str(
            browser.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute(
                "value"
            )
        )

    def until(condition: Callable[[WebDriver], object], what: str) -> object:
        try:
            return wait.until(condition)
        except TimeoutException:
            browser.save_screenshot(str(tmp_path / "page.png"))
            raise AssertionError(
                f"no {what} in {WAIT_S} s; the answer box holds {answer()!r} (screenshot: {tmp_path / 'page.png'})"
            ) from None

    def first(
        selector: str,
        what: str,
        keep: Callable[[WebElement], bool] = lambda e: e.is_displayed(),
    ) -> WebElement:
        """The first element of ``selector`` that ``keep`` keeps, once there is one."""
        found = until(
            lambda b: [
                e for e in b.find_elements(By.CSS_SELECTOR, selector) if keep(e)
            ],
            what,
        )
        return found[0]  # type: ignore[index]

    def choose_task(label: str) -> None:
        browser.find_element(
            By.XPATH, f"//*[@id='task']//label[contains(., '{label}')]"
        ).click()

    try:
        browser.get(demo_url)
        until(lambda b: b.find_elements(By.ID, "run"), "page")
        # Everything the page loads comes from the demo (no fonts or scripts
        # from outside: the page works offline).
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(u.startswith(demo_url) for u in loaded), loaded

        # No audio yet: the page says what to do.
        browser.find_element(By.ID, "run").click()
        toast = until(
            lambda b: [
                e.text
                for e in b.find_elements(By.CSS_SELECTOR, ".toast-body")
                if e.text
            ],
            "error message",
        )
        assert "No audio: upload an audio file" in " ".join(toast)  # type: ignore[arg-type]

        browser.find_element(By.CSS_SELECTOR, "#audio input[type=file]").send_keys(
            str(wav)
        )
        until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#audio audio"), "uploaded audio"
        )

        browser.find_element(By.ID, "run").click()
        until(lambda b: answer() == transcript, "transcript")

        choose_task("Translate")
        field = first("#language input", "language field")
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("French")
        first(
            "[role=listbox] li", "French in the list", lambda e: e.text == "French (fr)"
        ).click()
        assert field.get_attribute("value") == "French (fr)"

        browser.find_element(By.ID, "run").click()
        until(lambda b: answer() == translation, "translation")

        # The question box appears after a translation has run (Gradio 6.17
        # did not render a field hidden with visible=False: see page.HIDDEN).
        choose_task("Ask a question")
        box = first("#question textarea", "question box")
        box.send_keys(QUESTION)
        browser.find_element(By.ID, "run").click()
        until(lambda b: answer() == reply, "answer to the question")
    finally:
        browser.quit()
