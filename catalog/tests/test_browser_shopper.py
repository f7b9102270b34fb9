"""A shopper in headless Chromium: keyword search with filters, hybrid photo + words, cropping the
query by mouse and keyboard, and the near-duplicates admin page (helpers from test_browser)."""

from __future__ import annotations

from decimal import Decimal

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from catalog.tests.factories import category_create, product_create, shape_png

from .test_browser import BrowserTestCase


class KeywordSearchBrowserTests(BrowserTestCase):
    def setUp(self):
        super().setUp()
        dresses, shoes = category_create("Dresses"), category_create("Shoes")
        product_create(
            category=dresses, title="Red summer dress", price=Decimal("40"), images=[shape_png("circle", size=48)]
        )
        product_create(
            category=dresses, title="Red party dress", price=Decimal("140"), images=[shape_png("square", size=48)]
        )
        product_create(
            category=shoes, title="Red running shoe", price=Decimal("60"), images=[shape_png("bar", size=48)]
        )
        product_create(category=shoes, title="Blue boot", price=Decimal("90"), images=[shape_png("triangle", size=48)])

    def titles(self) -> list[str]:
        return [card.text for card in self.all(".grid .card .card-title")]

    def test_type_words_filter_by_category_and_price_and_the_words_stay_in_the_box(self):
        self.open("/")
        box = self.find("#header-q")
        box.send_keys("red")
        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".header-keywords-submit"))
        self.assertEqual(self.h1(), "Results for “red”")
        self.assertEqual(sorted(self.titles()), ["Red party dress", "Red running shoe", "Red summer dress"])
        self.assertEqual(self.find("#header-q").get_attribute("value"), "red")

        Select(self.find("#filter-category")).select_by_visible_text("Dresses")
        self.find("#filter-max").send_keys("100")
        self.click_and_wait(self.driver.find_element(By.CSS_SELECTOR, ".filters button[type=submit]"))
        self.assertEqual(self.h1(), "Results for “red” in Dresses")
        self.assertEqual(self.titles(), ["Red summer dress"])
        self.assertEqual(self.find("#header-q").get_attribute("value"), "red")
        self.assertEqual(self.find("#filter-max").get_attribute("value"), "100")
        self.shot("keyword-search")

    def test_a_typo_still_finds_the_product(self):
        self.open("/?q=runing+sho")
        self.assertEqual(
            self.find("[data-corrected-query]").text, "Showing results for running shoe; search instead for runing sho"
        )
        self.assertEqual(self.titles(), ["Red running shoe"])
        self.click_and_wait(self.find("[data-corrected-query] a"))  # the words as typed: similar titles
        self.assertIn("similar words", self.find("[data-similar-words]").text)
        self.assertEqual(self.titles(), ["Red running shoe"])
