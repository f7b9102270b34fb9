# Keyword search: a weighted tsvector per product kept by a trigger, GIN indexes for it and for
# trigram similarity of titles (the typo fallback).

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

# Raw SQL: the ORM has no triggers, and a GeneratedField cannot read the category's name from
# another table. The weights match catalog.keyword_search: title and SKU A, category B, description C.
# SKUs use the 'simple' configuration (no stemming, no stop words): "BAG-0012" stays searchable as typed.
TRIGGERS = """
CREATE FUNCTION catalog_product_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A')
        || setweight(to_tsvector('simple', coalesce(NEW.sku, '')), 'A')
        || setweight(to_tsvector('english', coalesce((SELECT name FROM catalog_category WHERE id = NEW.category_id), '')), 'B')
        || setweight(to_tsvector('english', coalesce(NEW.description, '')), 'C');
    RETURN NEW;
END
$$;
CREATE TRIGGER catalog_product_search_vector BEFORE INSERT OR UPDATE ON catalog_product
    FOR EACH ROW EXECUTE FUNCTION catalog_product_search_vector();

CREATE FUNCTION catalog_category_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS DISTINCT FROM OLD.name THEN
        UPDATE catalog_product SET search_vector = NULL WHERE category_id = NEW.id;  -- the trigger above refills it
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER catalog_category_search_vector AFTER UPDATE OF name ON catalog_category
    FOR EACH ROW EXECUTE FUNCTION catalog_category_search_vector();

UPDATE catalog_product SET search_vector = NULL;
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS catalog_category_search_vector ON catalog_category;
DROP FUNCTION IF EXISTS catalog_category_search_vector();
DROP TRIGGER IF EXISTS catalog_product_search_vector ON catalog_product;
DROP FUNCTION IF EXISTS catalog_product_search_vector();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        TrigramExtension(),
        migrations.AddField(
            model_name="product",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
        migrations.AddIndex(
            model_name="product",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="catalog_product_search_gin"),
        ),
        migrations.AddIndex(
            model_name="product",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["title"], name="catalog_product_title_trgm", opclasses=["gin_trgm_ops"]
            ),
        ),
    ]
