"""The photo-search form (used by the search page and the JSON API alike) and the one check of `k`."""

from __future__ import annotations

from django import forms
from django.conf import settings

from catalog.forms import KeywordFilterForm
from catalog.images import ImageInfo, InvalidImage, read_image
from catalog.models import Category

from .queries.boxes import AUTO, crop_choice_parse
from .queries.crop import BadCrop, Crop, crop_check

ACCEPT = "image/jpeg,image/png,image/webp,image/gif"
COORDINATE_FIELDS = ("x", "y", "w", "h")  # not parameters: the box is crop=x,y,w,h


def k_parse(raw: str | int | None) -> int:
    """How many results were asked for: SEARCH_DEFAULT_K when not given, else a whole number from 1 to
    SEARCH_MAX_K. The one check of k, for the pages and the API. Raises ValueError saying why."""
    if raw in (None, ""):
        return settings.SEARCH_DEFAULT_K
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"k must be a whole number between 1 and {settings.SEARCH_MAX_K}. Received: {raw!r}") from None
    if not 1 <= k <= settings.SEARCH_MAX_K:
        raise ValueError(f"k must be between 1 and {settings.SEARCH_MAX_K}. Received: {k}")
    return k


class PhotoSearchForm(KeywordFilterForm):
    """A photo, and optionally a category, words (q) and a price range that the results must match."""

    unlabelled_errors = ("image",)  # the photo's errors are whole sentences about the file

    image = forms.FileField(
        label="Photo",
        help_text="JPEG, PNG, WebP or GIF.",
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT}),
        error_messages={
            "required": "Choose a photo to search with.",
            "empty": "The file is empty.",
            "invalid": "No file was uploaded; check the form's encoding type.",
        },
    )
    category = forms.ModelChoiceField(
        queryset=Category.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        empty_label="All categories",
        error_messages={"invalid_choice": "There is no category “%(value)s”."},
    )
    k = forms.CharField(label="Results", required=False, widget=forms.NumberInput(attrs={"min": 1}))
    # "auto" (or empty): the item Lookalike finds; "none": the whole photo; x,y,w,h in pixels of the
    # photo as shown, as the page's crop box sets it (search.queries.boxes).
    crop = forms.CharField(label="Crop", required=False, max_length=100, widget=forms.HiddenInput)
    field_order = ["image", "category", "q", "min_price", "max_price", "k", "crop"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Here, not at import, so the bounds follow settings (and override_settings in tests).
        self.fields["k"].widget.attrs.update(max=settings.SEARCH_MAX_K, placeholder=settings.SEARCH_DEFAULT_K)
        max_mb = settings.SEARCH_UPLOAD_MAX_BYTES / 1e6
        self.fields["image"].help_text = f"JPEG, PNG, WebP or GIF, up to {max_mb:.0f} MB."
        self.fields["q"].label = "Words"
        self.order_fields(self.field_order)

    def clean_image(self) -> ImageInfo:
        upload = self.cleaned_data["image"]
        max_bytes = settings.SEARCH_UPLOAD_MAX_BYTES
        if upload.size > max_bytes:  # refuse before reading it into memory
            raise forms.ValidationError(
                f"The file is {upload.size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
            )
        try:
            return read_image(upload.read(), max_bytes=max_bytes)
        except InvalidImage as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_k(self) -> int:
        try:
            return k_parse(self.cleaned_data.get("k"))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_crop(self):
        """AUTO, NONE or a Crop (search.queries.boxes.crop_choice_parse)."""
        try:
            crop = crop_choice_parse(self.cleaned_data.get("crop"))
        except BadCrop as exc:
            raise forms.ValidationError(str(exc)) from exc
        # The box is one parameter: coordinates sent on their own are refused rather than ignored.
        loose = [name for name in COORDINATE_FIELDS if name in self.data]
        if loose:
            sent = ", ".join(loose)
            if crop == AUTO:
                raise forms.ValidationError(
                    f"crop=auto finds the item itself, so it cannot go with coordinates (received {sent}). "
                    "Leave them out, or give the box as crop=x,y,w,h."
                )
            raise forms.ValidationError(f"Give the box as crop=x,y,w,h; separate {sent} fields are not read.")
        return crop

    def clean(self):
        data = super().clean()
        info, crop = data.get("image"), data.get("crop")
        if info is not None and isinstance(crop, Crop):
            try:
                crop_check(crop, width=info.width, height=info.height)
            except BadCrop as exc:
                self.add_error("crop", str(exc))
        return data
