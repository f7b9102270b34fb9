from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.replicas import replica_state_register

        from . import receivers, replicas  # models are ready only now

        receivers.connect()
        # A read replica serves search only once it has the primary's serving version and index.
        replica_state_register(replicas.serving_state)
