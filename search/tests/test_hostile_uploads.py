"""Hostile and awkward uploads to the photo-search page and API, and the per-client rate limit.

Every hostile upload gets a 400 with a reason (never a 500) and leaves the database and MEDIA_ROOT
as they were; legitimate but awkward images (EXIF orientation, CMYK, 16-bit, palette, alpha,
animation) are decoded to the right pixels and searched.
"""

from __future__ import annotations

import io
import os
import struct
import time
import uuid
import zlib
from types import SimpleNamespace
from unittest import mock

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, override_settings
from django.urls import reverse
from PIL import Image, ImageOps

from catalog.images import InvalidImage, read_image
from catalog.models import Product, ProductImage
from catalog.tests.factories import PrivateMediaRootMixin
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob

from .factories import (
    COLORS,
    SHAPES,
    image_bytes,
    index_and_activate,
    product_create,
    shape_image,
    shape_png,
)
from .tiny_model import tiny_model_version

PAGE = reverse("search:photo_search")
API = reverse("search:api_search")


def upload(data: bytes, name: str = "photo.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def noise_png(size: int) -> bytes:
    return image_bytes(Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)))


def media_files() -> set[str]:
    root = settings.MEDIA_ROOT
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files} if os.path.isdir(root) else set()


class UploadTestCase(PrivateMediaRootMixin, TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        for shape in SHAPES:
            product_create(images=[shape_png(shape, color=COLORS[0])])
        index_and_activate(cls.version)

    def state(self):
        counts = tuple(m.objects.count() for m in (Product, ProductImage, ImageEmbedding, EmbeddingFailure, IndexJob))
        return counts, media_files()

    def post_both(self, files: dict, extra: dict | None = None):
        """POST the same upload to the page and the API; returns (page response, API response)."""
        responses = []
        for url in (PAGE, API):
            for f in files.values():
                f.seek(0)
            responses.append(self.client.post(url, {**files, **(extra or {})}))
        return responses

    def assertRefused(self, files: dict, reason: str):
        before = self.state()
        page, api = self.post_both(files)
        self.assertContains(page, reason, status_code=400)
        self.assertEqual(api.status_code, 400)
        self.assertIn(reason, api.json()["error"])
        self.assertEqual(self.state(), before)

    def assertSearched(self, files: dict):
        before = self.state()
        page, api = self.post_both(files, {"k": 2})
        self.assertEqual(page.status_code, 200, page.content[:500])
        self.assertEqual(api.status_code, 200, api.content[:500])
        self.assertEqual(len(api.json()["results"]), 2)
        self.assertEqual(self.state(), before)


class HostileUploadTests(UploadTestCase):
    def test_text_named_jpg_is_refused(self):
        self.assertRefused(
            {"image": upload(b"just some text, honest\n" * 20, "photo.jpg", "image/jpeg")}, "not an image"
        )

    def test_png_header_followed_by_html_is_refused(self):
        data = b"\x89PNG\r\n\x1a\n<html><script>alert(document.cookie)</script></html>"
        self.assertRefused({"image": upload(data, "photo.png", "image/png")}, "not an image")

    def test_empty_file_is_refused(self):
        self.assertRefused({"image": upload(b"", "photo.jpg", "image/jpeg")}, "The file is empty.")

    def test_truncated_jpeg_is_refused(self):
        jpeg = image_bytes(Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)), "JPEG", quality=90)
        self.assertRefused(
            {"image": upload(jpeg[: len(jpeg) // 2], "photo.jpg", "image/jpeg")}, "damaged or incomplete"
        )

    def test_zero_width_gif_is_refused(self):
        gif = bytearray(image_bytes(Image.new("P", (4, 4)), "GIF"))
        gif[6:8] = b"\x00\x00"  # logical screen width
        descriptor = gif.index(b"\x2c", 13)
        gif[descriptor + 5 : descriptor + 7] = b"\x00\x00"  # the frame's width
        before = self.state()
        page, api = self.post_both({"image": upload(bytes(gif), "photo.gif", "image/gif")})
        self.assertEqual((page.status_code, api.status_code), (400, 400))
        self.assertTrue(api.json()["error"])
        self.assertEqual(self.state(), before)
        with self.assertRaises(InvalidImage):
            read_image(bytes(gif))

    def test_decompression_bomb_above_twice_the_pixel_limit_is_refused(self):
        side = int((2.5 * Image.MAX_IMAGE_PIXELS) ** 0.5)
        self.assertRefused({"image": upload(png_claiming(side, side))}, "too many pixels")

    def test_image_between_one_and_two_times_the_limit_is_refused_not_just_warned(self):
        side = int((1.5 * Image.MAX_IMAGE_PIXELS) ** 0.5)
        self.assertGreater(side * side, Image.MAX_IMAGE_PIXELS)
        self.assertLess(side * side, 2 * Image.MAX_IMAGE_PIXELS)
        self.assertRefused({"image": upload(png_claiming(side, side))}, "too many pixels")

    @override_settings(SEARCH_UPLOAD_MAX_BYTES=20_000)
    def test_file_over_the_size_limit_is_refused(self):
        data = noise_png(100)  # ~30 kB
        self.assertGreater(len(data), 20_000)
        self.assertRefused({"image": upload(data)}, "the limit is")

    @override_settings(SEARCH_UPLOAD_MAX_BYTES=20_000)
    def test_request_body_far_over_the_limit_is_refused_before_it_is_read(self):
        self.assertRefused({"image": upload(b"\x00" * 400_000, "big.png")}, "the limit is")

    def test_101_files_in_one_request_are_refused(self):
        before = self.state()
        files = {f"image{i}" if i else "image": upload(shape_png(), f"p{i}.png") for i in range(101)}
        page, api = self.post_both(files)
        self.assertEqual(page.status_code, 400)
        self.assertEqual(api.status_code, 400)
        self.assertTrue(api.json()["error"])
        self.assertEqual(self.state(), before)

    def test_spoofed_content_type_does_not_make_text_an_image(self):
        self.assertRefused({"image": upload(b"<?php system($_GET['c']); ?>", "photo.png", "image/png")}, "not an image")


class LegitimateButOddUploadTests(UploadTestCase):
    def test_valid_png_named_txt_is_searched(self):
        self.assertSearched({"image": upload(shape_png("circle"), "photo.txt", "text/plain")})

    def test_spoofed_content_type_on_a_real_image_is_irrelevant(self):
        self.assertSearched({"image": upload(shape_png("circle"), "photo.png", "application/x-php")})

    def test_hostile_filenames_are_never_used(self):
        names = ["../../../etc/passwd.png", "a\x00b.png", "line\nbreak.png", "x" * 300 + ".png", "photo.jpg.php"]
        for name in names:
            with self.subTest(name=name[:40]):
                before = self.state()
                page, api = self.post_both({"image": upload(shape_png("triangle"), name)}, {"k": 2})
                # The name is never looked at: the photo is searched, or a mangled part is refused.
                self.assertIn(page.status_code, (200, 400))
                self.assertEqual(api.status_code, page.status_code, api.content[:300])
                self.assertEqual(self.state(), before)
        # The part-header-safe names are searched like any other photo.
        for name in ["../../../etc/passwd.png", "x" * 300 + ".png", "photo.jpg.php"]:
            self.assertSearched({"image": upload(shape_png("triangle"), name)})

    def test_every_exif_orientation_is_applied(self):
        # Top-left quarter red, the rest blue: after orientation the red corner is top-left again.
        upright = Image.new("RGB", (40, 20), (0, 0, 255))
        upright.paste((255, 0, 0), (0, 0, 20, 10))
        # What each orientation's stored pixels are (the inverse of what a viewer applies).
        stored = {
            2: Image.Transpose.FLIP_LEFT_RIGHT,
            3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90,
            7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270,
        }
        for orientation, method in stored.items():
            with self.subTest(orientation=orientation):
                exif = Image.Exif()
                exif[0x0112] = orientation
                data = image_bytes(upright.transpose(method), "JPEG", quality=95, exif=exif.tobytes())
                self.assertEqual(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size, (40, 20))
                info = read_image(data)
                self.assertEqual((info.width, info.height), (40, 20))
                r, g, b = info.image.getpixel((5, 5))
                self.assertGreater(r, 200, (orientation, r, g, b))
                self.assertLess(b, 60)
                self.assertLess(info.image.getpixel((35, 15))[0], 60)
        exif = Image.Exif()
        exif[0x0112] = 6
        self.assertSearched(
            {
                "image": upload(
                    image_bytes(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()), "p.jpg"
                )
            }
        )

    def test_cmyk_jpeg(self):
        data = image_bytes(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", quality=95)
        info = read_image(data)
        self.assertEqual(info.image.mode, "RGB")
        r, g, b = info.image.getpixel((3, 3))
        self.assertTrue(r > 200 and g < 60 and b < 60, (r, g, b))
        self.assertSearched({"image": upload(data, "cmyk.jpg", "image/jpeg")})

    def test_16_bit_png(self):
        img = Image.new("I;16", (12, 12), 0)
        img.paste(65535, (0, 0, 6, 12))
        img.paste(32896, (6, 0, 12, 12))
        data = image_bytes(img, "PNG")
        self.assertEqual(Image.open(io.BytesIO(data)).mode, "I;16")
        info = read_image(data)
        self.assertEqual(info.image.getpixel((1, 1)), (255, 255, 255))
        self.assertEqual(info.image.getpixel((10, 1)), (128, 128, 128))
        self.assertSearched({"image": upload(data, "deep.png")})

    def test_palette_and_alpha_images(self):
        palette = Image.new("P", (10, 10))
        palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)
        transparent_palette = image_bytes(palette, "PNG", transparency=0)
        rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
        rgba.paste((0, 255, 0, 0), (0, 0, 5, 10))  # left half fully transparent
        cases = {
            "palette": (image_bytes(palette, "PNG"), (0, 0, 255)),
            "transparent palette": (transparent_palette, (255, 255, 255)),
            "rgba": (image_bytes(rgba, "PNG"), (255, 255, 255)),
            "la": (image_bytes(Image.new("LA", (10, 10), (0, 0)), "PNG"), (255, 255, 255)),
        }
        for name, (data, pixel) in cases.items():
            with self.subTest(name):
                self.assertEqual(read_image(data).image.getpixel((1, 1)), pixel)
                self.assertSearched({"image": upload(data, f"{name}.png")})
        self.assertEqual(read_image(image_bytes(rgba, "PNG")).image.getpixel((8, 1)), (255, 0, 0))

    def test_animated_gif_uses_the_first_frame(self):
        frames = [shape_image("circle", color=(255, 0, 0), size=24), Image.new("RGB", (24, 24), (0, 255, 0))]
        data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        self.assertEqual(Image.open(io.BytesIO(data)).n_frames, 2)
        info = read_image(data)
        self.assertEqual(info.image.getpixel((12, 12)), (255, 0, 0))
        self.assertEqual(info.image.getpixel((0, 0)), (0, 0, 0))
        self.assertSearched({"image": upload(data, "anim.gif", "image/gif")})


@override_settings(SEARCH_RATE_LIMIT="3/minute")
class RateLimitTests(UploadTestCase):
    def setUp(self):
        # A fresh address per test: the Redis counters outlive the test and other runs share them.
        self.addr = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
        # One moment in the middle of a window for the whole test: the limit counts per fixed minute,
        # and a slow run that crossed a minute boundary started counting again.
        now = (time.time() // 60) * 60 + 30
        patcher = mock.patch("config.ratelimit.time", SimpleNamespace(time=lambda: now))  # that module's clock only
        patcher.start()
        self.addCleanup(patcher.stop)

    def search(self, url, addr=None, **extra):
        return self.client.post(url, {"image": upload(shape_png())}, REMOTE_ADDR=addr or self.addr, **extra)

    def test_the_page_answers_429_with_retry_after_past_the_limit(self):
        for _ in range(3):
            self.assertEqual(self.search(PAGE).status_code, 200)
        response = self.search(PAGE)
        self.assertContains(response, "Too many photo searches", status_code=429)
        self.assertTrue(1 <= int(response["Retry-After"]) <= 60)
        self.assertEqual(self.client.get(PAGE, REMOTE_ADDR=self.addr).status_code, 200)  # only POSTs count

    def test_the_api_answers_json_429_and_other_clients_are_not_limited(self):
        for _ in range(3):
            self.assertEqual(self.search(API).status_code, 200)
        response = self.search(API)
        self.assertEqual(response.status_code, 429)
        self.assertIn("Too many photo searches", response.json()["error"])
        self.assertTrue(1 <= int(response["Retry-After"]) <= 60)
        self.assertEqual(self.search(API, addr=self.addr + "1").status_code, 200)

    def test_page_and_api_share_one_limit_and_refused_uploads_count(self):
        self.assertEqual(self.client.post(API, {"image": upload(b"junk")}, REMOTE_ADDR=self.addr).status_code, 400)
        self.assertEqual(self.search(PAGE).status_code, 200)
        self.assertEqual(self.search(API).status_code, 200)
        self.assertEqual(self.search(PAGE).status_code, 429)

    @override_settings(RATE_LIMIT_TRUSTED_PROXIES=1)
    def test_behind_one_proxy_the_forwarded_address_is_limited_and_a_forged_one_ignored(self):
        for i in range(3):
            # A client-forged left-most entry changes nothing: the proxy's entry is what counts.
            forwarded = f"203.0.113.{i}, {self.addr}"
            self.assertEqual(self.search(API, addr="172.18.0.5", HTTP_X_FORWARDED_FOR=forwarded).status_code, 200)
        self.assertEqual(self.search(API, addr="172.18.0.5", HTTP_X_FORWARDED_FOR=self.addr).status_code, 429)
        self.assertEqual(self.search(API, addr="172.18.0.5", HTTP_X_FORWARDED_FOR=self.addr + "9").status_code, 200)
