"""The JSON API's OpenAPI schema and docs page, and REST framework changing nothing the API does."""

from __future__ import annotations

import json

import yaml
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, TestCase
from django.urls import reverse

from catalog import views as catalog_views
from catalog.models import Category, Product

PRODUCTS = "/api/products"
SEARCH = "/api/search"


def schema_get(client: Client) -> dict:
    response = client.get(reverse("api_schema"), {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return json.loads(response.content)


class SchemaTests(TestCase):
    def setUp(self):
        self.schema = schema_get(self.client)
        self.components = self.schema["components"]["schemas"]

    def body_schema(self, path: str, method: str, status: str = "200") -> dict:
        ref = self.schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return self.components[ref.rsplit("/", 1)[1]]

    def test_yaml_by_default_and_json_on_request_describe_the_same_openapi_3_schema(self):
        response = self.client.get(reverse("api_schema"))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(yaml.safe_load(response.content), self.schema)
        self.assertTrue(self.schema["openapi"].startswith("3."))

    def test_every_operation_of_the_api_is_described(self):
        operations = {(path, method) for path, item in self.schema["paths"].items() for method in item}
        self.assertEqual(
            operations, {("/api/products", "get"), ("/api/products/{id}/similar", "get"), ("/api/search", "post")}
        )

    def test_every_error_is_the_error_object(self):
        for path, item in self.schema["paths"].items():
            for method, operation in item.items():
                for status in (s for s in operation["responses"] if not s.startswith("2")):
                    with self.subTest(path=path, method=method, status=status):
                        self.assertEqual(self.body_schema(path, method, status)["required"], ["error"])

    def test_products_list_describes_the_corrections_as_optional(self):
        products = self.body_schema("/api/products", "get")
        self.assertNotIn("corrected_query", products["required"])
        self.assertNotIn("corrections", products["required"])
        self.assertEqual(
            (products["properties"]["corrected_query"]["type"], products["properties"]["corrected_query"]["nullable"]),
            ("string", True),
        )
        correction = self.components["Correction"]
        self.assertEqual(set(correction["properties"]), {"word", "corrected"})
        params = {p["name"]: p["schema"] for p in self.schema["paths"]["/api/products"]["get"]["parameters"]}
        self.assertEqual(set(params), {"q", "category", "min_price", "max_price", "page", "page_size"})
        self.assertEqual(params["page_size"]["maximum"], catalog_views.API_MAX_PAGE_SIZE)

    def test_photo_search_describes_crop_boxes_box_and_notice(self):
        upload = self.schema["paths"]["/api/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        form = self.components[upload["$ref"].rsplit("/", 1)[1]]
        self.assertEqual(form["required"], ["image"])
        self.assertEqual(form["properties"]["image"]["format"], "binary")
        crop = form["properties"]["crop"]
        self.assertEqual(crop["default"], "auto")
        self.assertRegex("auto", crop["pattern"])
        self.assertRegex("none", crop["pattern"])
        self.assertRegex("10,20,200,150", crop["pattern"])
        self.assertNotRegex("10,20", crop["pattern"])
        body = self.body_schema("/api/search", "post")
        for name in ("boxes", "box", "notice"):
            self.assertNotIn(name, body["required"])
        self.assertEqual(set(self.components["Box"]["properties"]), {"x", "y", "w", "h", "score"})
        self.assertTrue(body["properties"]["box"]["nullable"])
        self.assertTrue(body["properties"]["notice"]["nullable"])
        for status in ("429", "503"):
            self.assertIn("Retry-After", self.schema["paths"]["/api/search"]["post"]["responses"][status]["headers"])

    def test_the_docs_page_is_served_from_this_site(self):
        response = self.client.get(reverse("api_docs"))
        self.assertEqual(response.status_code, 200)
        page = response.content.decode()
        self.assertIn(reverse("api_schema"), page)
        self.assertNotIn("cdn.", page)  # works offline: Swagger UI's files are this site's static files
        self.assertIn("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", page)
        self.assertIsNotNone(finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"))


class ApiBehaviourTests(TestCase):
    """What the views did before REST framework wrapped them, they still do."""

    @classmethod
    def setUpTestData(cls):
        category = Category.objects.create(name="Shoes", slug="shoes")
        cls.product = Product.objects.create(sku="A-1", title="Ankle boot", category=category, price=10)

    def assertJsonError(self, response, status: int, message: str | None = None):
        self.assertEqual(response.status_code, status, response.content[:300])
        self.assertEqual(response["Content-Type"], "application/json")
        body = response.json()
        self.assertEqual(set(body), {"error"})
        if message is not None:
            self.assertEqual(body["error"], message)

    def test_other_methods_get_each_views_own_405_message_as_json(self):
        client = Client(enforce_csrf_checks=True)  # no CSRF failure page in the way: the API reads only
        similar = f"/api/products/{self.product.pk}/similar"
        search_message = "Use POST with a multipart form: image, and optionally k and category."
        for method in ("post", "put", "patch", "delete", "options"):
            with self.subTest(method):
                self.assertJsonError(getattr(client, method)(PRODUCTS), 405, "Use GET.")
                self.assertJsonError(getattr(client, method)(similar), 405, "Use GET.")
        for method in ("get", "put", "delete", "options"):
            with self.subTest(method):
                self.assertJsonError(getattr(client, method)(SEARCH), 405, search_message)
        self.assertJsonError(client.generic("BREW", PRODUCTS), 405, "Use GET.")
        allow = client.delete(PRODUCTS)["Allow"]  # RFC 9110: a 405 says what is allowed
        self.assertEqual(set(allow.split(", ")), {"GET", "HEAD"})

    def test_responses_are_json_whatever_the_client_accepts(self):
        for accept in ("text/html", "application/xml", "text/html,application/xhtml+xml,*/*;q=0.8", ""):
            with self.subTest(accept):
                response = self.client.get(PRODUCTS, {"format": "api"}, HTTP_ACCEPT=accept)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertEqual(response.json()["results"][0]["sku"], "A-1")
        self.assertEqual(self.client.head(PRODUCTS).status_code, 200)

    def test_errors_keep_their_shape_and_messages(self):
        self.assertJsonError(
            self.client.get(PRODUCTS, {"page": "x"}), 400, "page must be a whole number. Received: 'x'"
        )
        self.assertJsonError(
            self.client.get(f"/api/products/{self.product.pk + 1000}/similar"),
            404,
            f"There is no product with id {self.product.pk + 1000}.",
        )
        self.assertJsonError(self.client.get(f"/api/products/{self.product.pk}/similar", {"k": "0"}), 400)

    def test_photo_search_needs_no_csrf_token_even_with_a_session(self):
        user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-long-enough-1")
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)  # REST framework's session authentication would demand a CSRF token here
        response = client.post(SEARCH, {"image": SimpleUploadedFile("x.txt", b"hello", content_type="text/plain")})
        self.assertJsonError(response, 400)
        self.assertIn("not an image", response.json()["error"])

    def test_a_body_that_is_not_a_form_is_a_missing_photo_not_a_415(self):
        for content_type, body in (
            ("text/plain", b"hello"),
            ("application/json", b'{"image": "x"}'),
            ("application/x-www-form-urlencoded", b"k=3"),
        ):
            with self.subTest(content_type):
                response = self.client.post(SEARCH, body, content_type=content_type)
                self.assertJsonError(response, 400, "Choose a photo to search with.")
