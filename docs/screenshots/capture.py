"""Retake the screenshots in README.md from a running Lookalike (demo data loaded, a model active).

    .venv/bin/python manage.py runserver 127.0.0.1:8765 --noreload &
    .venv/bin/python docs/screenshots/capture.py http://127.0.0.1:8765
    .venv/bin/python docs/screenshots/capture.py http://127.0.0.1:8765 --search-pages  # keyword, hybrid, crop

Uses Debian's chromium + chromium-driver like the browser tests. For the admin dashboard it makes a
throwaway superuser with a random password and deletes it afterwards. PNGs are quantised to stay small.
"""

from __future__ import annotations

import io
import os
import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

from config.database import database_ensure  # noqa: E402

database_ensure()  # the settings start no database themselves
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from PIL import Image  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from catalog.models import Product  # noqa: E402
from catalog.tests.test_browser import chromium  # noqa: E402

OUT = Path(__file__).resolve().parent


def save(driver, name: str, colours: int = 128) -> None:
    png = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    png.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(OUT / f"{name}.png", optimize=True)
    print(f"{name}.png {(OUT / f'{name}.png').stat().st_size // 1024} KB")


def main(base: str) -> None:
    wait = lambda d, css: WebDriverWait(d, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))  # noqa: E731
    product = Product.objects.filter(category__name="Ankle boot").order_by("id")[3]
    query = Product.objects.filter(category__name="Sneaker").order_by("-id").first().images.first()

    driver = chromium(width=1280, height=860)
    try:
        driver.get(base + "/")
        wait(driver, ".grid")
        save(driver, "catalogue")

        driver.get(base + product.get_absolute_url())
        wait(driver, ".similar")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.set_window_size(1280, 1080)
        save(driver, "product")

        driver.get(base + product.get_absolute_url() + "similar/")
        wait(driver, ".similar .grid")
        save(driver, "more-like-this")

        driver.get(base + "/search/")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            Image.open(query.image.path).convert("RGB").resize((112, 112), Image.Resampling.NEAREST).save(photo.name)
            driver.find_element(By.ID, "id_image").send_keys(photo.name)
            driver.find_element(By.ID, "id_k").send_keys("12")
            driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]").click()
            wait(driver, ".results .grid")
        save(driver, "search-results")

        driver.set_window_size(390, 844)
        driver.get(base + "/")
        wait(driver, ".grid")
        save(driver, "mobile-catalogue")
    finally:
        driver.quit()

    password = secrets.token_urlsafe(24)
    user = get_user_model().objects.create_superuser(f"screenshots-{secrets.token_hex(4)}", "", password)
    driver = chromium(width=1440, height=1250)
    try:
        driver.get(base + "/admin/login/?next=/admin/ml/modelversion/dashboard/")
        driver.find_element(By.ID, "id_username").send_keys(user.username)
        driver.find_element(By.ID, "id_password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait(driver, "#lk-map")
        if driver.find_elements(By.CSS_SELECTOR, "#nav-sidebar"):
            driver.execute_script("document.querySelector('#toggle-nav-sidebar')?.click()")  # more room for the table
        save(driver, "admin-dashboard", colours=192)
    finally:
        driver.quit()
        user.delete()


def two_products_photo(path: str) -> None:
    """A "photo" of two catalogue products side by side, enlarged: what the crop box is for."""
    left = Product.objects.filter(category__name="Sneaker").order_by("id")[5].images.first()
    right = Product.objects.filter(category__name="Bag").order_by("id")[5].images.first()
    tiles = [
        Image.open(i.image.path).convert("RGB").resize((224, 224), Image.Resampling.NEAREST) for i in (left, right)
    ]
    photo = Image.new("RGB", (448, 224))
    photo.paste(tiles[0], (0, 0))
    photo.paste(tiles[1], (224, 0))
    photo.save(path)


def main_search_pages(base: str) -> None:
    """--search-pages: keyword results, photo + words, the crop box, the near-duplicates admin page."""
    from selenium.webdriver.common.action_chains import ActionChains

    wait = lambda d, css: WebDriverWait(d, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))  # noqa: E731
    query = Product.objects.filter(category__name="Sneaker").order_by("-id").first().images.first()
    driver = chromium(width=1280, height=860)
    try:
        driver.get(base + "/?q=ankle+boot&max_price=60")
        wait(driver, ".grid")
        save(driver, "keyword-search")

        driver.get(base + "/search/")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            Image.open(query.image.path).convert("RGB").resize((112, 112), Image.Resampling.NEAREST).save(photo.name)
            driver.find_element(By.ID, "id_image").send_keys(photo.name)
            driver.find_element(By.ID, "id_q").send_keys("sandal")
            driver.find_element(By.ID, "id_max_price").send_keys("80")
            driver.find_element(By.ID, "id_k").send_keys("12")
            driver.find_element(By.CSS_SELECTOR, ".photo-search button[type=submit]").click()
            wait(driver, ".results .grid")
        driver.set_window_size(1280, 1100)
        save(driver, "hybrid-search")

        driver.set_window_size(1280, 900)
        driver.get(base + "/search/")
        with tempfile.NamedTemporaryFile(suffix=".png") as photo:
            two_products_photo(photo.name)
            driver.find_element(By.ID, "id_image").send_keys(photo.name)
            wait(driver, "[data-crop-box]")
            image = driver.find_element(By.CSS_SELECTOR, "[data-crop-image]")
            handle = driver.find_element(By.CSS_SELECTOR, '[data-handle="nw"]')
            ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(
                image.size["width"] // 2 + 10, 12
            ).release().perform()
            driver.execute_script("document.querySelector('[data-cropper]').scrollIntoView({block: 'center'})")
            save(driver, "crop-box")
    finally:
        driver.quit()

    password = secrets.token_urlsafe(24)
    user = get_user_model().objects.create_superuser(f"screenshots-{secrets.token_hex(4)}", "", password)
    driver = chromium(width=1280, height=1000)
    try:
        driver.get(base + "/admin/login/?next=/admin/search/nearduplicate/")
        driver.find_element(By.ID, "id_username").send_keys(user.username)
        driver.find_element(By.ID, "id_password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        WebDriverWait(driver, 600).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[data-pair-count]")))
        if driver.find_elements(By.CSS_SELECTOR, "#nav-sidebar"):
            driver.execute_script("document.querySelector('#toggle-nav-sidebar')?.click()")
        save(driver, "admin-near-duplicates", colours=192)
    finally:
        driver.quit()
        user.delete()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    base_url = args[0].rstrip("/") if args else "http://127.0.0.1:8765"
    (main_search_pages if "--search-pages" in sys.argv else main)(base_url)
