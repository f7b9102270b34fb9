"""The OpenAPI description of similar items and photo search (drf-spectacular): what search.views'
API views take and return. Describes only: the views build their JSON themselves."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from catalog.api_schema import MATCHES, PRICE_PATTERN, ErrorSerializer

from .queries.similar import SimilarItems

K = {"type": "integer", "minimum": 1, "maximum": settings.SEARCH_MAX_K}
STATES = [SimilarItems.READY, SimilarItems.NOT_INDEXED, SimilarItems.NO_IMAGES]  # no_model is the 503
CROP_PATTERN = r"^(auto|none|[0-9]+,[0-9]+,[0-9]+,[0-9]+)$"


class SimilarProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.URLField(help_text="The product's page.")
    image_url = serializers.URLField(allow_null=True, help_text="Its image that matched; null: none to show.")
    distance = serializers.FloatField(help_text="Cosine distance to the query (smaller is more alike).")


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(min_value=0)
    total = serializers.IntegerField(min_value=0)


class SimilarItemsSerializer(serializers.Serializer):
    product = serializers.IntegerField(help_text="The product asked about.")
    model_version = serializers.IntegerField(help_text="The model version that ranked the results.")
    state = serializers.ChoiceField(
        choices=STATES,
        help_text="ready; not_indexed: the product's images are not indexed yet; no_images: it has none.",
    )
    results = SimilarProductSerializer(many=True)
    progress = ProgressSerializer(required=False, help_text="While the catalogue is being indexed: how far it is.")


class RegionSerializer(serializers.Serializer):
    x = serializers.IntegerField(min_value=0)
    y = serializers.IntegerField(min_value=0)
    w = serializers.IntegerField(min_value=1)
    h = serializers.IntegerField(min_value=1)


class BoxSerializer(RegionSerializer):
    score = serializers.FloatField(help_text="How likely the box holds one product.")


class CategoryGuessSerializer(serializers.Serializer):
    label = serializers.CharField()
    probability = serializers.FloatField(min_value=0, max_value=1)


class PhotoSearchSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    query = serializers.CharField(allow_blank=True, help_text="The words the results had to match, as cleaned.")
    match = serializers.ChoiceField(choices=MATCHES, help_text="How the words matched (all: no words).")
    category_guess = CategoryGuessSerializer(
        allow_null=True, help_text="The model's category; null without a classifier head."
    )
    results = SimilarProductSerializer(many=True)
    boxes = BoxSerializer(
        many=True, required=False, help_text="Products found in the photo, best first (pixels of the photo)."
    )
    box = RegionSerializer(
        required=False, allow_null=True, help_text="The region the results are for; null: the whole photo."
    )
    notice = serializers.CharField(required=False, allow_null=True, help_text="Something to tell the person, or null.")


class PhotoSearchUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="A JPEG, PNG, WebP or GIF photo.")
    k = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.SEARCH_MAX_K,
        help_text=f"How many results (default {settings.SEARCH_DEFAULT_K}).",
    )
    category = serializers.CharField(required=False, help_text="A category's slug: results only from it.")
    q = serializers.CharField(required=False, allow_blank=True, help_text="Words the results must match.")
    min_price = serializers.RegexField(
        PRICE_PATTERN, required=False, help_text="Only products priced at or above this."
    )
    max_price = serializers.RegexField(
        PRICE_PATTERN, required=False, help_text="Only products priced at or below this."
    )
    crop = serializers.RegexField(
        CROP_PATTERN,
        required=False,
        default="auto",
        help_text='"auto": the best box found in the photo; "none": the whole photo; "x,y,w,h": that region in pixels.',
    )


def _retry_after(*statuses: int) -> OpenApiParameter:
    return OpenApiParameter(
        "Retry-After",
        int,
        OpenApiParameter.HEADER,
        response=list(statuses),
        description="Seconds to wait before trying again.",
    )


similar_schema = extend_schema(
    operation_id="products_similar",
    summary="Products that look like this one",
    description="The product's nearest neighbours by the active model, nearest first.",
    parameters=[
        OpenApiParameter("k", K, required=False, description=f"How many (default {settings.SEARCH_DEFAULT_K})."),
        OpenApiParameter(
            "same_category",
            str,
            required=False,
            description='"1" or "true": only from the product\'s category (anything else: from all).',
        ),
    ],
    responses={
        200: SimilarItemsSerializer,
        400: ErrorSerializer,
        404: OpenApiResponse(ErrorSerializer, description="No such product."),
        503: OpenApiResponse(ErrorSerializer, description="No model is active yet."),
    },
)

photo_search_schema = extend_schema(
    operation_id="search_by_photo",
    summary="Products that look like a photo",
    description=(
        "The products nearest to an uploaded photo (kept nowhere), optionally within a category, words and a "
        "price range, with the model's category guess and the products it found in the photo."
    ),
    request={"multipart/form-data": PhotoSearchUploadSerializer},
    parameters=[_retry_after(429, 503)],
    responses={
        200: PhotoSearchSerializer,
        400: OpenApiResponse(ErrorSerializer, description="Not an image Lookalike accepts, or a bad field."),
        429: OpenApiResponse(ErrorSerializer, description="Too many photo searches from this client."),
        503: OpenApiResponse(
            ErrorSerializer, description="No model is active, or it cannot be loaded or run right now."
        ),
    },
)
