from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("", views.product_list_view, name="product_list"),
    path("products/<int:pk>/", views.product_detail_view, name="product_detail"),
    path("products/<int:pk>/similar/", views.product_more_like_this_view, name="product_more_like_this"),
    path("api/products", views.api_product_list, name="api_product_list"),
]
