"""What catalog announces. Upper layers (search) connect receivers in their AppConfig.ready();
catalog knows nothing of who listens."""

from django.dispatch import Signal

# A bulk import wrote images without post_save (catalog.services.fashion_mnist_import), after its
# transactions committed. Sent with sender=ProductImage, count=<images added>. A receiver may return
# a line for the person who ran the import (the command prints it), or None.
images_bulk_added = Signal()
