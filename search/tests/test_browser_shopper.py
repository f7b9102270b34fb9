"""A shopper in headless Chromium, on the real services and the tiny real model: hybrid photo + words,
cropping the query by mouse and by keyboard, and the near-duplicates admin page."""

from __future__ import annotations

import tempfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from catalog.tests.test_browser import BrowserTestCase, _purge, catalogue_with_index
from search.tests.factories import COLORS, shape_image, shape_png


class HybridBrowserTests(BrowserTestCase):
    def setUp(self):
        super().setUp()
        _purge("embeddings")
        catalogue_with_index(self)

    def photo(self, data: bytes):
        photo = tempfile.NamedTemporaryFile(suffix=".png")
        photo.write(data)
        photo.flush()
        self.addCleanup(photo.close)
        return photo.name

    def result_titles(self) -> list[str]:
        return [card.text for card in self.all(".results .grid .card .card-title")]

    def test_photo_and_words_on_the_search_page(self):
        self.open("/search/")
        self.driver.find_element(By.ID, "id_image").send_keys(self.photo(shape_png("square", color=COLORS[0], size=64)))
        self.driver.find_element(By.ID, "id_q").send_keys("triangle")
        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]"))
        self.assertEqual(self.find("#results-heading").text, "Most similar among “triangle”")
        titles = self.result_titles()
        self.assertEqual(len(titles), 4)
        self.assertTrue(all(t.startswith("Triangle") for t in titles), titles)
        self.assertEqual(self.find("#header-q").get_attribute("value"), "triangle")
        self.shot("hybrid-search")

    def test_sort_keyword_results_by_similarity_to_a_photo(self):
        self.open("/?q=circle")
        self.assertEqual(len(self.all(".grid .card")), 4)
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.ID, "photo-sort-image").send_keys(
            self.photo(shape_png("circle", color=COLORS[2], size=64))
        )
        self.wait(EC.staleness_of(old), message="choosing a photo did not sort the results")
        titles = self.result_titles()
        self.assertEqual(sorted(titles), ["Circle B", "Circle G", "Circle R", "Circle Y"])
        self.assertEqual(titles[0], "Circle B")  # the same shape and colour as the photo comes first


class CropBrowserTests(BrowserTestCase):
    """A photo of a red square beside a green triangle: boxing one half finds that shape."""

    def setUp(self):
        super().setUp()
        _purge("embeddings")
        catalogue_with_index(self)
        from .test_crop import two_up

        photo = tempfile.NamedTemporaryFile(suffix=".png")
        photo.write(
            two_up(shape_image("square", color=COLORS[0], size=64), shape_image("triangle", color=COLORS[1], size=64))
        )
        photo.flush()
        self.addCleanup(photo.close)
        self.photo = photo.name
        with open(photo.name, "rb") as f:
            whole = self.client.post(
                reverse("search:api_search"),
                {"image": SimpleUploadedFile("p.png", f.read(), "image/png"), "crop": "none"},
            )
        self.whole = [r["title"] for r in whole.json()["results"]]

    def choose_photo(self):
        self.open("/search/")
        self.driver.find_element(By.ID, "id_image").send_keys(self.photo)
        self.find("[data-crop-box]")
        self.wait(
            lambda d: "find the item in the photo (128×64)" in d.find_element(By.CSS_SELECTOR, "[data-crop-text]").text
        )

    def crop_value(self) -> str:
        return self.driver.find_element(By.NAME, "crop").get_attribute("value")

    def search(self) -> list[str]:
        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]"))
        return [card.text for card in self.all(".results .grid .card .card-title")]

    def test_drag_a_corner_with_the_mouse(self):
        self.choose_photo()
        image = self.find("[data-crop-image]")
        handle = self.driver.find_element(By.CSS_SELECTOR, '[data-handle="se"]')
        ActionChains(self.driver).move_to_element(handle).click_and_hold().move_by_offset(
            -image.size["width"] // 2, 0
        ).release().perform()
        self.wait(lambda d: self.crop_value().startswith("0,0,"))
        x, y, w, h = map(int, self.crop_value().split(","))
        self.assertLessEqual(abs(w - 64), 2)
        self.assertEqual(h, 64)
        self.shot("crop-box")
        titles = self.search()
        self.assertTrue(titles[0].startswith("Square"), titles)
        self.assertNotEqual(titles, self.whole)
        self.assertIn("the boxed part", self.find("[data-cropped]").text)

    def test_move_and_resize_with_the_keyboard(self):
        self.choose_photo()
        box = self.driver.find_element(By.CSS_SELECTOR, "[data-crop-box]")
        box.send_keys(Keys.NULL)  # focus
        self.assertEqual(self.driver.switch_to.active_element, box)
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ARROW_LEFT * 16).key_up(Keys.SHIFT).perform()
        self.assertEqual(self.crop_value(), "0,0,64,64")
        ActionChains(self.driver).send_keys(Keys.ARROW_RIGHT * 20).perform()  # stops at the right edge
        self.assertEqual(self.crop_value(), "64,0,64,64")
        titles = self.search()
        self.assertTrue(titles[0].startswith("Triangle"), titles)
        self.assertNotEqual(titles, self.whole)


class NearDuplicatesAdminBrowserTests(BrowserTestCase):
    def test_admin_sees_pairs_side_by_side_and_opens_either_product(self):
        from django.contrib.auth import get_user_model

        from search.serving.hnsw import hnsw_index_build

        from .factories import model_version_create, product_with_vectors

        version = model_version_create(dim=2, active=True)
        for i in range(6):
            product_with_vectors(model_version=version, vectors=[[float(i), 0.0]], title=f"Point {i}")
        product_with_vectors(model_version=version, vectors=[[3.01, 0.0]], title="Point 3 listed twice")
        hnsw_index_build(model_version=version)
        get_user_model().objects.create_superuser("admin", "admin@example.com", "a-long-test-password")
        self.open("/admin/login/?next=/admin/search/nearduplicate/")
        self.find("#id_username").send_keys("admin")
        self.driver.find_element(By.ID, "id_password").send_keys("a-long-test-password" + Keys.ENTER)
        self.assertEqual(self.find("[data-pair-count]").text, "1 pair within 0.2500.")
        [row] = self.all("tr[data-pair]")
        self.assertEqual(len(row.find_elements(By.TAG_NAME, "img")), 2)
        self.assertIn("0.0100", row.text)
        self.shot("admin-near-duplicates")
        self.click_and_wait(row.find_element(By.LINK_TEXT, "Point 3 listed twice"))
        self.assertIn("/admin/catalog/product/", self.driver.current_url)
        self.assertEqual(self.find("#id_title").get_attribute("value"), "Point 3 listed twice")
