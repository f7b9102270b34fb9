"""Choosing between the boxes Lookalike found, in headless Chromium on the real services and the tiny
model: a photo of a red square beside a green triangle gives two boxes; the results are for the square
until the triangle's box is clicked; then the crop step starts from that box."""

from __future__ import annotations

import tempfile

from selenium.webdriver.common.by import By

from catalog.tests.test_browser import BrowserTestCase, _purge, catalogue_with_index
from search.tests.factories import COLORS, shape_image

from .test_crop import two_up


class BoxChoiceBrowserTests(BrowserTestCase):
    def setUp(self):
        super().setUp()
        _purge("embeddings")
        catalogue_with_index(self)
        photo = tempfile.NamedTemporaryFile(suffix=".png")  # noqa: SIM115 - closed by the cleanup
        photo.write(
            two_up(shape_image("square", color=COLORS[0], size=64), shape_image("triangle", color=COLORS[1], size=64))
        )
        photo.flush()
        self.addCleanup(photo.close)
        self.photo = photo.name

    def titles(self) -> list[str]:
        return [card.text for card in self.all(".results .grid .card .card-title")]

    def boxes(self):
        return self.all("[data-proposals] .proposal[data-box]")

    def pressed(self) -> list[str]:
        return [b.get_attribute("aria-pressed") for b in self.boxes()]

    def photo_carried(self) -> bool:
        """The page's script has put the photo back into the file input."""
        return self.driver.execute_script("return document.querySelector('#id_image').files.length") == 1

    def search_button(self):
        return self.driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]")

    def test_pick_the_second_box_then_adjust_it(self):
        self.open("/search/")
        self.driver.find_element(By.ID, "id_image").send_keys(self.photo)
        self.wait(lambda d: "find the item" in d.find_element(By.CSS_SELECTOR, "[data-crop-text]").text)
        self.click_and_wait(self.search_button())

        # Two boxes drawn on the photo, the results for the first (the square).
        self.find("[data-proposals]")
        self.assertEqual(self.find("#proposals-heading").text, "2 items in your photo")
        self.assertEqual(self.pressed(), ["true", "false"])
        self.assertTrue(self.titles()[0].startswith("Square"), self.titles())
        self.assertIn("The results are for item 1.", self.find("[data-boxes-status]").text)
        self.wait(lambda d: self.photo_carried(), message="the photo was not put back into the file input")
        self.shot("boxes-two-items")

        # One click on the triangle's box searches again with it.
        second = self.boxes()[1].get_attribute("data-box")
        self.click_and_wait(self.boxes()[1])
        self.assertEqual(self.pressed(), ["false", "true"])
        self.assertEqual(self.boxes()[1].get_attribute("data-box"), second)
        self.assertIn("The results are for item 2.", self.find("[data-boxes-status]").text)
        self.assertTrue(self.titles()[0].startswith("Triangle"), self.titles())
        self.shot("boxes-second-chosen")

        # The crop step starts from the chosen box; accepting it searches the same item again.
        self.wait(lambda d: self.photo_carried())
        self.driver.find_element(By.CSS_SELECTOR, "[data-box-adjust]").click()
        self.find("[data-crop-box]")
        self.wait(
            lambda d: d.find_element(By.NAME, "crop").get_attribute("value") == second,
            message="the crop box did not start from the chosen box",
        )
        self.assertIn("Searching the boxed part", self.find("[data-crop-text]").text)
        self.click_and_wait(self.search_button())
        self.assertEqual(self.pressed(), ["false", "true"])
        self.assertTrue(self.titles()[0].startswith("Triangle"), self.titles())

        # Choosing another photo: the boxes drawn on this one go, and the next search finds its item.
        self.wait(lambda d: self.photo_carried())
        self.driver.find_element(By.ID, "id_image").send_keys(self.photo)
        self.wait(
            lambda d: not d.find_element(By.CSS_SELECTOR, "[data-proposals]").is_displayed(),
            message="the previous photo's boxes stayed",
        )
        self.assertEqual(self.driver.find_element(By.NAME, "crop").get_attribute("value"), "")

    def test_a_photo_of_nothing_says_the_whole_photo_was_used(self):
        from PIL import Image

        wall = tempfile.NamedTemporaryFile(suffix=".png")  # noqa: SIM115 - closed by the cleanup
        Image.new("RGB", (96, 64), (120, 110, 100)).save(wall, format="PNG")
        wall.flush()
        self.addCleanup(wall.close)
        self.open("/search/")
        self.driver.find_element(By.ID, "id_image").send_keys(wall.name)
        self.find("[data-crop-box]")
        self.click_and_wait(self.search_button())
        self.assertIn(
            "No item was found in the photo; these results are for the whole photo.",
            self.find("[data-boxes-notice]").text,
        )
        self.assertEqual(self.boxes(), [])
        self.assertEqual(len(self.titles()), 8)
