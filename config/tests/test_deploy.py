"""Production settings: `manage.py check --deploy` is clean, and they refuse to start insecurely."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from django.conf import settings
from django.test import SimpleTestCase

ROOT = settings.BASE_DIR


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "CACHE_URL": "locmem://", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "shop.example.com"}


class DeployCheckTests(SimpleTestCase):
    def test_check_deploy_is_clean_with_production_settings(self):
        result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("System check identified no issues", result.stdout)

    def test_production_settings_turn_on_secure_cookies_hsts_and_ssl_redirect(self):
        code = (
            "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps(["
            "s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
            " s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_CONTENT_TYPE_NOSNIFF, s.X_FRAME_OPTIONS, s.ALLOWED_HOSTS,"
            " s.SEARCH_RATE_LIMIT]))"
        )
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SEARCH_RATE_LIMIT"}
        }
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", "CACHE_URL": "locmem://", **PRODUCTION},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        values = __import__("json").loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(
            values, [False, True, True, True, 31536000, True, True, "DENY", ["shop.example.com"], "30/minute"]
        )

    def test_debug_off_without_a_secret_key_refuses_to_start(self):
        result = manage("check", DEBUG="0", ALLOWED_HOSTS="shop.example.com")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("SECRET_KEY must be set when DEBUG is off", result.stderr)

    def test_the_check_catches_a_weak_secret_key(self):
        result = manage("check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "SECRET_KEY": "short"})
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("security.W009", result.stdout + result.stderr)
