"""End to end in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against a
live server on the real services: PostgreSQL + pgvector, Redis, a real Celery worker and a tiny
real model. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path

from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core.cache import cache
from django.db import connections
from django.test import override_settings
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from config.celery import app
from ml.models import ModelVersion
from search.serving.versions import model_version_is_active
from search.tests.factories import COLORS, SHAPES, category_create, index_and_activate, product_create, shape_png
from search.tests.tiny_model import LABEL_NAMES, tiny_model_version

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
WAIT = 30  # seconds for a page or an element; the admin flow waits longer for training


def chromium(*, width: int = 1280, height: int = 900, javascript: bool = True) -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def _purge(*queues: str) -> None:
    with app.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_purge(queue)


class BrowserTestCase(StaticLiveServerTestCase):
    javascript = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.driver = chromium(javascript=cls.javascript)
        cls.addClassCleanup(cls.driver.quit)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def setUp(self):
        cache.clear()  # the navigation's category counts are cached for a minute

    def open(self, path: str) -> None:
        self.driver.get(self.live_server_url + path)

    def wait(self, condition, timeout: float = WAIT, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition, message)

    def find(self, css: str, timeout: float = WAIT):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, f"no visible {css}")

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click_and_wait(self, element) -> None:
        """Click a link or button and wait until the next page has replaced this one."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        self.wait_replaced(old, "the page did not change")

    def wait_replaced(self, old, message: str) -> None:
        """Wait until the page holding `old` (its html element) is gone."""

        def gone(_driver) -> bool:
            # Chromium may answer "node does not belong to the document" instead of a stale
            # reference while the next page replaces this one: gone all the same.
            try:
                old.is_enabled()
            except (StaleElementReferenceException, WebDriverException):
                return True
            return False

        self.wait(gone, message=message)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def h1(self) -> str:
        return self.find("h1").text


def catalogue_with_index(test: StaticLiveServerTestCase, *, size: int = 48) -> ModelVersion:
    """16 shape products in 4 categories, indexed with the tiny model, which is then active."""
    version = tiny_model_version()
    categories = [category_create(name) for name in LABEL_NAMES]
    for i, shape in enumerate(SHAPES):
        for color in COLORS:
            product_create(
                category=categories[i],
                images=[shape_png(shape, color=color, size=size)],
                title=f"{shape.title()} {'RGBY'[COLORS.index(color)]}",
            )
    index_and_activate(version)  # index_job_start queues tasks too; this test runs them itself
    test.addCleanup(_purge, "embeddings")
    return version


class ShopperTests(BrowserTestCase):
    def setUp(self):
        super().setUp()
        _purge("embeddings")
        catalogue_with_index(self)

    def test_browse_open_a_product_follow_a_similar_item_and_see_more_like_this(self):
        self.open("/")
        self.assertEqual(self.h1(), "All products")
        self.assertEqual(len(self.all(".grid .card")), 16)
        self.assertTrue(all(img.get_attribute("alt") for img in self.all(".grid img")))
        self.shot("catalogue")

        self.click_and_wait(self.driver.find_element(By.LINK_TEXT, "Circle 4"))  # nav pill: name and count
        self.assertEqual(self.h1(), "Circle")
        cards = self.all(".grid .card")
        self.assertEqual(len(cards), 4)
        title = cards[0].find_element(By.CSS_SELECTOR, ".card-title").text

        self.click_and_wait(cards[0].find_element(By.TAG_NAME, "a"))
        self.assertEqual(self.h1(), title)
        similar = self.all(".similar .grid .card")
        self.assertEqual(len(similar), 12)
        self.shot("product")

        next_title = similar[0].find_element(By.CSS_SELECTOR, ".card-title").text
        self.click_and_wait(similar[0].find_element(By.TAG_NAME, "a"))
        self.assertEqual(self.h1(), next_title)
        self.assertEqual(len(self.all(".similar .grid .card")), 12)

        self.click_and_wait(self.driver.find_element(By.PARTIAL_LINK_TEXT, "More like this"))
        self.assertEqual(self.h1(), f"More like {next_title}")
        self.assertEqual(len(self.all(".similar .grid .card")), 15)  # every other product (k=48)
        self.shot("more-like-this")

    def test_keyboard_skip_link_and_card_focus(self):
        self.open("/")
        body = self.driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        active = self.driver.switch_to.active_element
        self.assertEqual(active.text, "Skip to content")
        active.send_keys(Keys.ENTER)
        self.wait(lambda d: d.execute_script("return location.hash") == "#main")
        # Tabbing on from the main content reaches the filters (category, min and max price, Apply),
        # then the first product card's link.
        self.driver.switch_to.active_element.send_keys(Keys.TAB)
        self.assertEqual(self.driver.switch_to.active_element.get_attribute("id"), "filter-category")
        for _ in range(4):
            self.driver.switch_to.active_element.send_keys(Keys.TAB)
        self.wait(lambda d: d.switch_to.active_element.get_attribute("href") or False)
        self.assertIn("/products/", self.driver.switch_to.active_element.get_attribute("href"))

    def test_choose_a_photo_see_a_preview_then_results_with_the_query_and_the_guess(self):
        self.open("/search/")
        self.find(".dropzone-label")
        self.shot("search-empty")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            photo.write(shape_png("circle", color=COLORS[2], size=64))
            photo.flush()
            self.driver.find_element(By.ID, "id_image").send_keys(photo.name)
            preview = self.find("[data-preview]")
            self.assertTrue(preview.get_attribute("src").startswith("blob:"))
            self.driver.find_element(By.ID, "id_k").send_keys("12")
            self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]"))
        self.assertTrue(self.find("img.query-thumb").get_attribute("src").startswith("data:image/png;base64,"))
        self.assertIn("Looks like", self.find(".guess").text)
        self.assertEqual(len(self.all(".results .grid .card")), 12)
        self.shot("search-results")

    def test_dropping_a_photo_on_the_header_search_submits_it(self):
        self.open("/")
        self.find(".header-search-label")
        data = base64.b64encode(shape_png("square", color=COLORS[0], size=64)).decode()
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.execute_script(
            """
            const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            const form = document.querySelector("form.header-search");
            for (const type of ["dragenter", "dragover", "drop"]) {
              form.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }
            """,
            data,
        )
        self.wait(EC.staleness_of(old), message="dropping did not submit the search")
        self.assertEqual(self.h1(), "Search by photo")
        self.assertEqual(len(self.all(".results .grid .card")), settings.SEARCH_DEFAULT_K)
        self.find("img.query-thumb")

    def test_dropping_something_that_is_not_a_photo_says_so_and_stays(self):
        self.open("/")
        self.find(".header-search-label")
        self.driver.execute_script(
            """
            const dt = new DataTransfer();
            dt.items.add(new File(["hello"], "notes.txt", {type: "text/plain"}));
            document.querySelector("form.header-search").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
            """
        )
        status = self.find(".header-search-status.is-error")
        self.assertIn("notes.txt", status.text)
        self.assertEqual(self.h1(), "All products")

    def test_searching_shows_a_busy_state(self):
        self.open("/search/")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            photo.write(shape_png("bar", size=64))
            photo.flush()
            self.find(".dropzone-label")
            self.driver.find_element(By.ID, "id_image").send_keys(photo.name)
            # Hold the page on its busy state: a listener added after the page's own cancels sending.
            self.driver.execute_script(
                "const f = document.querySelector('form.photo-search');"
                "f.addEventListener('submit', (e) => e.preventDefault()); f.requestSubmit();"
            )
        button = self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]")
        self.assertEqual((button.text, button.is_enabled()), ("Searching…", False))
        self.assertEqual(
            self.driver.find_element(By.CSS_SELECTOR, "form.photo-search").get_attribute("aria-busy"), "true"
        )
        self.assertEqual(self.find(".photo-search [data-status]").text, "Searching for similar items…")
        self.shot("search-busy")

    def test_errors_are_shown_next_to_the_form(self):
        self.open("/search/")
        self.find(".photo-search button[type=submit]").click()  # no photo: caught before sending
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-status]"), "Choose or drop a photo first."))
        with tempfile.NamedTemporaryFile(suffix=".png") as fake:
            fake.write(b"this is not a picture")
            fake.flush()
            self.driver.find_element(By.ID, "id_image").send_keys(fake.name)
            self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]"))
        error = self.find(".dropzone .form-error")
        self.assertEqual(error.get_attribute("role"), "alert")
        self.assertEqual(self.driver.find_element(By.ID, "id_image").get_attribute("aria-invalid"), "true")
        self.shot("search-error")


class NoJavaScriptTests(BrowserTestCase):
    javascript = False

    def setUp(self):
        super().setUp()
        _purge("embeddings")
        catalogue_with_index(self)

    def test_plain_form_searches_without_javascript(self):
        self.open("/search/")
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "html").get_attribute("class"), "no-js")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            photo.write(shape_png("triangle", color=COLORS[1], size=64))
            photo.flush()
            self.find("#id_image").send_keys(photo.name)  # the file input is visible without JS
            self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]"))
        self.find("img.query-thumb")
        self.assertEqual(len(self.all(".results .grid .card")), settings.SEARCH_DEFAULT_K)


def _close_worker_connections(**kwargs) -> None:
    connections.close_all()  # the worker thread's connection would keep the test database from being dropped


class AdminModelTests(BrowserTestCase):
    """Train → watch progress → reindex → watch progress → activate, with a real worker on Redis."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Version ids repeat between test runs: train into an empty folder, never over an old checkpoint.
        models_root = tempfile.TemporaryDirectory(prefix="lookalike-browser-models-")
        cls.addClassCleanup(models_root.cleanup)
        cls.enterClassContext(override_settings(MODELS_ROOT=Path(models_root.name)))
        _purge("embeddings", "training")
        task_postrun.connect(_close_worker_connections, weak=False)
        cls.worker = start_worker(
            app, queues=["embeddings", "training"], perform_ping_check=False, pool="solo", loglevel="WARNING"
        )
        cls.worker.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.worker.__exit__(None, None, None)
        task_postrun.disconnect(_close_worker_connections)
        _purge("embeddings", "training")
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for i, shape in enumerate(SHAPES):
            category = category_create(LABEL_NAMES[i])
            for j, color in enumerate(COLORS):
                product_create(category=category, images=[shape_png(shape, color=color, size=16)], title=f"{shape} {j}")
        get_user_model().objects.create_superuser("admin", "admin@example.com", "a-long-test-password")

    def status(self) -> str:
        return self.find("#lk-live [data-k=status]").text

    def wait_for_text(self, css: str, text: str, timeout: float) -> None:
        try:
            self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout)
        except TimeoutException:
            self.shot("admin-timeout")
            raise AssertionError(
                f"{css} never said {text!r}; it says {self.driver.find_element(By.CSS_SELECTOR, css).text!r}"
            ) from None

    def test_train_watch_reindex_activate_and_see_the_dashboard(self):
        self.open("/admin/login/?next=/admin/ml/modelversion/")
        self.find("#id_username").send_keys("admin")
        self.driver.find_element(By.ID, "id_password").send_keys("a-long-test-password" + Keys.ENTER)
        self.click_and_wait(self.find(".object-tools a[href$='dashboard/']"))
        self.assertIn("No model has been trained yet", self.find(".lk-empty").text)

        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/train/']"))
        Select(self.find("#id_architecture")).select_by_value("classifier")
        Select(self.driver.find_element(By.ID, "id_variant")).select_by_value("cnn")
        for name, value in {"epochs": 1, "image_size": 16, "dim": 8, "batch_size": 8}.items():
            self.driver.find_element(By.ID, f"id_{name}").send_keys(str(value))
        auto = self.driver.find_element(By.ID, "id_auto_activate")
        if auto.is_selected():
            auto.click()  # activate by hand below
        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, "input[type=submit][value='Start training']"))

        # The change page polls the status URL: queued/running first, then succeeded (with a reload).
        seen = {self.status()}
        self.assertTrue(seen & {"queued", "running"}, seen)
        deadline = time.monotonic() + 150
        while "succeeded" not in seen and time.monotonic() < deadline:
            try:
                seen.add(self.status())
            except Exception:  # noqa: BLE001 - the page reloads under us when training finishes
                pass
            if "failed" in seen:
                self.fail(f"training failed: {self.driver.find_element(By.CSS_SELECTOR, '#lk-live').text}")
            time.sleep(0.3)
        self.assertIn("succeeded", seen, "training did not finish in time")
        self.wait_for_text("#lk-live [data-k=training_text]", "epoch 1/1", WAIT)
        self.find("#lk-live [data-k=loss_curve] svg")  # the page reloaded itself to show the loss curve
        self.shot("admin-trained")

        self.click_and_wait(self.find("form[action$='/reindex/'] button"))
        self.assertIn("Reindex job", self.find(".messagelist").text)
        self.wait_for_text("#lk-live [data-k=index_text]", "done: 16 embedded, 0 failed of 16", 90)
        self.wait_for_text("#lk-live [data-k=coverage_text]", "Coverage: 16 of 16", WAIT)
        # The page reloads itself half a second after it sees the job finish (live.js), which could
        # land after the activation below and take its message with it: load it afresh (the job is
        # done, so this one does not reload).
        html = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.refresh()
        self.wait_replaced(html, "the page did not reload")
        self.wait_for_text("#lk-live [data-k=coverage_text]", "Coverage: 16 of 16", WAIT)

        self.click_and_wait(self.find("form[action$='/activate/'] button"))
        self.assertIn("is now active", self.find(".messagelist").text)
        version = ModelVersion.objects.get()
        self.assertTrue(model_version_is_active(model_version=version))

        self.open("/admin/ml/modelversion/dashboard/")
        row = self.find(".lk-versions tbody tr")
        self.assertEqual(row.find_element(By.CSS_SELECTOR, ".lk-badge").text.lower(), "active")
        self.assertIn("16 of 16 images", row.text)
        legend = self.find("#lk-map svg.lk-map").text
        for name in LABEL_NAMES:
            self.assertIn(name, legend)
        self.assertEqual(len(self.all("#lk-map svg.lk-map circle")), 16 + len(LABEL_NAMES))  # points + legend dots
        self.shot("admin-dashboard")

        # The shop now shows similar items from the model that was just activated.
        product = version.embeddings.first().product
        self.open(product.get_absolute_url())
        self.assertEqual(len(self.all(".similar .grid .card")), 12)
