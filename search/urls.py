from django.urls import path

from . import views

app_name = "search"
urlpatterns = [
    path("search/", views.photo_search_view, name="photo_search"),
    path("api/products/<int:pk>/similar", views.api_product_similar, name="api_product_similar"),
    path("api/search", views.api_search, name="api_search"),
]
