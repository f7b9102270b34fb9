"""The photo-search form: used by the search page and the JSON API alike."""

from __future__ import annotations

from django import forms
from django.conf import settings

import dataclasses

from catalog.forms import KeywordFilterForm
from catalog.images import ImageInfo, InvalidImage, read_image
from catalog.models import Category

from .crop import BadCrop, crop_check, crop_parse

ACCEPT = "image/jpeg,image/png,image/webp,image/gif"


class PhotoSearchForm(KeywordFilterForm):
    """A photo, and optionally a category, words (q) and a price range that the results must match."""

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
    k = forms.IntegerField(label="Results", required=False, min_value=1)
    # Set by the page's crop box (x,y,w,h in pixels of the photo as shown); empty: the whole photo.
    crop = forms.CharField(label="Crop", required=False, max_length=100, widget=forms.HiddenInput)
    field_order = ["image", "category", "q", "min_price", "max_price", "k", "crop"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Built here, not at import, so the bounds follow settings (and override_settings in tests).
        self.fields["k"] = forms.IntegerField(label="Results", required=False, min_value=1, max_value=settings.SEARCH_MAX_K)
        self.fields["k"].widget.attrs["placeholder"] = settings.SEARCH_DEFAULT_K
        max_mb = settings.SEARCH_UPLOAD_MAX_BYTES / 1e6
        self.fields["image"].help_text = f"JPEG, PNG, WebP or GIF, up to {max_mb:.0f} MB."
        self.fields["q"].label = "Words"
        self.order_fields(self.field_order)

    def clean_image(self) -> ImageInfo:
        upload = self.cleaned_data["image"]
        max_bytes = settings.SEARCH_UPLOAD_MAX_BYTES
        if upload.size > max_bytes:  # refuse before reading it into memory
            raise forms.ValidationError(f"The file is {upload.size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        try:
            return read_image(upload.read(), max_bytes=max_bytes)
        except InvalidImage as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_k(self) -> int:
        return self.cleaned_data.get("k") or settings.SEARCH_DEFAULT_K

    def clean_crop(self):
        raw = self.cleaned_data.get("crop") or ""
        if not raw.strip():
            return None
        try:
            return crop_parse(raw)
        except BadCrop as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        data = super().clean()
        info, crop = data.get("image"), data.get("crop")
        if info is not None and crop is not None:
            try:
                crop_check(crop, width=info.width, height=info.height)
            except BadCrop as exc:
                self.add_error("crop", str(exc))
            else:
                # The search (and the thumbnail shown back) use only the boxed part.
                data["image"] = dataclasses.replace(info, image=info.image.crop(crop.box), width=crop.w, height=crop.h)
        return data

    def first_error(self) -> str:
        for field, errors in self.errors.items():
            label = self.fields[field].label if field in self.fields else ""
            return f"{label}: {errors[0]}" if label and field != "image" else errors[0]
        return "The request was not valid."
