"""Issue 16 in headless Chromium, on the real services and the tiny real model: hybrid photo + words,
cropping the query by mouse and by keyboard, and the near-duplicates admin page."""

from __future__ import annotations

import tempfile

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from catalog.tests.test_browser import BrowserTestCase, _purge, catalogue_with_index
from search.tests.factories import COLORS, shape_png


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
        self.driver.find_element(By.ID, "photo-sort-image").send_keys(self.photo(shape_png("circle", color=COLORS[2], size=64)))
        self.wait(EC.staleness_of(old), message="choosing a photo did not sort the results")
        titles = self.result_titles()
        self.assertEqual(sorted(titles), ["Circle B", "Circle G", "Circle R", "Circle Y"])
        self.assertEqual(titles[0], "Circle B")  # the same shape and colour as the photo comes first
