"""The OpenAPI description of GET /api/products (drf-spectacular): what catalog.views.api_product_list
takes and returns. Describes only: the view builds its JSON itself."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from .forms import PRICE_MAX
from .keyword_search import QUERY_MAX_LENGTH, Match

# catalog.views' bounds (the views import this module, not the reverse; a test keeps them equal).
API_MAX_PAGE_SIZE = 100
API_PAGE_SIZE = 24
MATCHES = [Match.ALL, Match.SKU, Match.WORDS, Match.SIMILAR]


class ErrorSerializer(serializers.Serializer):
    """Every error of the API: 4xx and 5xx alike."""

    error = serializers.CharField(help_text="What went wrong, for people; never a traceback or a path.")


class CorrectionSerializer(serializers.Serializer):
    word = serializers.CharField(help_text="A word of the query as it was typed.")
    corrected = serializers.CharField(help_text="The catalogue's word it was read as.")


class ProductSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField(help_text="The category's slug.")
    price = serializers.CharField(allow_null=True, help_text='A decimal as a string ("19.99"); null: no price.')
    url = serializers.URLField(help_text="The product's page.")
    image_url = serializers.URLField(allow_null=True, help_text="Its first image; null: it has none.")
    rank = serializers.FloatField(
        allow_null=True, help_text="Relevance to the words (higher first); null without words."
    )


class ProductListSerializer(serializers.Serializer):
    query = serializers.CharField(allow_blank=True, help_text="The words searched for, as cleaned.")
    match = serializers.ChoiceField(
        choices=MATCHES, help_text="all: no words; sku: an exact SKU; words: full text; similar: similar words."
    )
    count = serializers.IntegerField(min_value=0)
    count_exact = serializers.BooleanField(help_text="false: at least `count` products match (the count is capped).")
    page = serializers.IntegerField(min_value=1)
    num_pages = serializers.IntegerField(min_value=1)
    results = ProductSummarySerializer(many=True)
    corrected_query = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The query with misspelt words corrected; null: nothing was corrected.",
    )
    corrections = CorrectionSerializer(many=True, required=False, help_text="Each corrected word.")


PRICE_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
PRICE = {"type": "string", "pattern": PRICE_PATTERN, "example": "19.99"}


def _price(name: str, bound: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        PRICE,
        required=False,
        description=f"Only products priced {bound} this (0 to {PRICE_MAX:,}, at most 2 decimals).",
    )


QUERY = {"type": "string", "maxLength": QUERY_MAX_LENGTH}
KEYWORD_PARAMETERS = [
    OpenApiParameter("q", QUERY, required=False, description="Words, or a SKU."),
    _price("min_price", "at or above"),
    _price("max_price", "at or below"),
]

product_list_schema = extend_schema(
    operation_id="products_list",
    summary="The catalogue, or keyword search over it",
    description="One page of the catalogue; with q, the products matching the words, best first.",
    parameters=[
        KEYWORD_PARAMETERS[0],
        OpenApiParameter("category", str, required=False, description="A category's slug."),
        *KEYWORD_PARAMETERS[1:],
        OpenApiParameter("page", {"type": "integer", "minimum": 1}, required=False, description="1 and up."),
        OpenApiParameter(
            "page_size",
            {"type": "integer", "minimum": 1, "maximum": API_MAX_PAGE_SIZE},
            required=False,
            description=f"Products per page (default {API_PAGE_SIZE}).",
        ),
    ],
    responses={
        200: ProductListSerializer,
        400: ErrorSerializer,  # a bad parameter: an unknown category, a price that is not one, ...
        404: ErrorSerializer,  # a page past the last
    },
)
