"""The keyword search and filter form: the catalogue page, GET /api/products and (for its words and
price range) photo search all validate with it."""

from __future__ import annotations

from django import forms

from .keyword_search import QUERY_MAX_LENGTH
from .models import Category

PRICE_MAX = 99_999_999  # Product.price is DecimalField(max_digits=10, decimal_places=2)


def _price_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=0,
        max_value=PRICE_MAX,
        max_digits=10,
        decimal_places=2,
        error_messages={"invalid": "Enter a price as a number, like 25 or 19.99."},
        widget=forms.NumberInput(attrs={"min": 0, "step": "0.01", "inputmode": "decimal"}),
    )


class KeywordFilterForm(forms.Form):
    """Words and a price range. The catalogue form below adds a category; photo search has its own."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=QUERY_MAX_LENGTH,
        error_messages={
            "max_length": f"Search words can be at most {QUERY_MAX_LENGTH} characters long (yours has %(show_value)d)."
        },
    )
    min_price = _price_field("Min price")
    max_price = _price_field("Max price")

    def clean(self):
        data = super().clean()
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError(f"The min price ({low}) is above the max price ({high}).")
        return data

    unlabelled_errors: tuple[str, ...] = ()  # fields whose errors already say what they are about

    def first_error(self) -> str:
        """The first error as one line for people: "Label: message" (the message alone for a form-wide
        error or a field in `unlabelled_errors`)."""
        for field, errors in self.errors.items():
            label = self.fields[field].label if field in self.fields and field not in self.unlabelled_errors else ""
            return f"{label}: {errors[0]}" if label else errors[0]
        return "The request was not valid."


class ProductSearchForm(KeywordFilterForm):
    category = forms.ModelChoiceField(
        label="Category",
        queryset=Category.objects.all(),
        to_field_name="slug",
        required=False,
        error_messages={"invalid_choice": "There is no category “%(value)s”."},
    )
    field_order = ["q", "category", "min_price", "max_price"]
