"""What ml announces. Upper layers (search) connect receivers in their AppConfig.ready(); ml knows
nothing of who listens."""

from django.dispatch import Signal

# A version finished training and was evaluated: it is SUCCEEDED and its files are in place.
# Sent by ml.services.model_version_train with sender=ModelVersion, model_version=<the version>.
model_version_trained = Signal()
