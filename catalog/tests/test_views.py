from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse

from catalog.tests.factories import category_create, product_create, shape_png
from catalog.views import PAGE_SIZE


class ProductListTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.tops = category_create("Tops")
        cls.shoes = category_create("Shoes")
        cls.top = product_create(category=cls.tops, title="Striped top")
        cls.shoe = product_create(category=cls.shoes, title="Runner")

    def setUp(self):
        cache.clear()

    def test_lists_products_with_their_images(self):
        response = self.client.get(reverse("catalog:product_list"))
        self.assertContains(response, "Striped top")
        self.assertContains(response, "Runner")
        self.assertContains(response, self.top.images.get().image.url)

    def test_category_filter(self):
        response = self.client.get(reverse("catalog:product_list"), {"category": "shoes"})
        self.assertContains(response, "Runner")
        self.assertNotContains(response, "Striped top")

    def test_unknown_category_is_404(self):
        self.assertEqual(self.client.get(reverse("catalog:product_list"), {"category": "nope"}).status_code, 404)

    def test_pagination(self):
        for _ in range(PAGE_SIZE):
            product_create(category=self.tops, images=[])
        first = self.client.get(reverse("catalog:product_list"))
        self.assertEqual(len(first.context["page"].object_list), PAGE_SIZE)
        self.assertContains(first, "Page 1 of 2")
        second = self.client.get(reverse("catalog:product_list"), {"page": 2})
        self.assertEqual(len(second.context["page"].object_list), 2)
        self.assertEqual(self.client.get(reverse("catalog:product_list"), {"page": "abc"}).status_code, 200)

    def test_query_count_does_not_grow_with_the_page(self):
        # navigation categories, count, products (+category join), images
        with self.assertNumQueries(4):
            self.client.get(reverse("catalog:product_list"))
        for _ in range(30):
            product_create(category=self.tops, images=[shape_png(), shape_png("circle")])
        cache.clear()
        with self.assertNumQueries(4):
            response = self.client.get(reverse("catalog:product_list"))
        self.assertEqual(len(response.context["page"].object_list), 32)


class ProductDetailTests(TestCase):
    def test_shows_all_images_and_the_similar_items_section(self):
        product = product_create(title="Two views", images=[shape_png(), shape_png("circle")])
        response = self.client.get(product.get_absolute_url())
        self.assertContains(response, "Two views")
        for image in product.images.all():
            self.assertContains(response, image.image.url)
        self.assertContains(response, "Similar items")

    def test_unknown_product_is_404(self):
        response = self.client.get(reverse("catalog:product_detail", args=[999999]))
        self.assertEqual(response.status_code, 404)
        self.assertContains(response, "There is nothing here", status_code=404)


class MoreLikeThisTests(TestCase):
    def test_page_links_back_and_explains_when_no_model_is_active(self):
        product = product_create(title="Lonely boot")
        response = self.client.get(reverse("catalog:product_more_like_this", args=[product.pk]))
        self.assertContains(response, "More like Lonely boot")
        self.assertContains(response, f'href="{product.get_absolute_url()}"')
        self.assertContains(response, "once a model has been trained")

    def test_unknown_product_is_404(self):
        self.assertEqual(self.client.get(reverse("catalog:product_more_like_this", args=[999999])).status_code, 404)


class CacheOutageTests(TestCase):
    @override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
                "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
            }
        }
    )
    def test_pages_render_without_the_navigation_when_the_cache_is_down(self):
        product = product_create(title="Still here")
        self.assertContains(self.client.get(reverse("catalog:product_list")), "Still here")
        self.assertEqual(self.client.get(product.get_absolute_url()).status_code, 200)
