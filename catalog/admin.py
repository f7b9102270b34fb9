from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html

from .images import InvalidImage, read_image
from .models import Category, Product, ProductImage


def _thumbnail(image: ProductImage, size: int = 64):
    if not image.image:
        return "—"
    css = "image-rendering:pixelated;" if image.is_small else "object-fit:contain;"
    return format_html(
        '<img src="{}" width="{}" height="{}" style="{}background:#f3f3f0" alt="">', image.image.url, size, size, css
    )


class ProductImageForm(forms.ModelForm):
    class Meta:
        model = ProductImage
        fields = ["image", "position"]

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        # A new upload is an UploadedFile; an unchanged row gives back its stored FieldFile.
        if isinstance(upload, UploadedFile):
            max_bytes = settings.SEARCH_UPLOAD_MAX_BYTES
            if upload.size > max_bytes:  # refused before it is read into memory
                raise forms.ValidationError(
                    f"The file is {upload.size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
                )
            upload.seek(0)
            try:
                info = read_image(upload.read(), max_bytes=max_bytes)
            except InvalidImage as exc:
                raise forms.ValidationError(str(exc)) from exc
            upload.seek(0)
            upload.name = f"upload{info.extension}"  # the stored name's suffix follows the bytes, not the uploader
            self.instance.sha256 = info.sha256
        return upload


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    form = ProductImageForm
    extra = 1
    fields = ["preview", "image", "position", "width", "height", "sha256"]
    readonly_fields = ["preview", "width", "height", "sha256"]

    @admin.display(description="Preview")
    def preview(self, obj):
        return _thumbnail(obj)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "product_count"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @admin.display(ordering="product_count")
    def product_count(self, obj):
        return obj.product_count


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "sku", "title", "category", "price", "updated_at"]
    list_display_links = ["thumbnail", "sku", "title"]
    list_filter = ["category", "created_at"]
    search_fields = ["sku", "title"]
    list_select_related = ["category"]
    list_per_page = 50
    inlines = [ProductImageInline]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).browsable()

    @admin.display(description="Image")
    def thumbnail(self, obj):
        image = obj.primary_image
        return _thumbnail(image, 40) if image else "—"
