from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),  # OpenAPI 3 (YAML; ?format=json)
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("", include("search.urls")),
    path("", include("catalog.urls")),
]

# `make run` serves with gunicorn, which (unlike runserver) serves no static files: with DEBUG on, Django does.
urlpatterns += staticfiles_urlpatterns()

if settings.DEBUG or settings.TESTING:
    # In production the web server (or a storage bucket) serves media; see docker-compose.yml.
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", views.media_serve)]

handler400 = "config.views.error_400"
handler404 = "config.views.error_404"
handler500 = "config.views.error_500"
