# The spelling vocabulary for typo correction: every product's distinct words (title, category name and
# description, written by the search vector trigger) and a table of the catalogue's words with how
# many products have each in their text and in their SKU, kept by statement triggers on
# catalog_product and built here for the products already there.

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
from django.db import migrations, models

# A word is a run of letters (any script), lower case, 2 to 64 letters long: digits and punctuation
# are no words. Keep in step with catalog.spelling (WORD, WORD_LETTERS).
WORDS_FUNCTION = """
CREATE FUNCTION catalog_search_words(body text) RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT w ORDER BY w), '{}')
    FROM regexp_split_to_table(lower(body), '[^[:alpha:]]+') AS w
    WHERE length(w) BETWEEN 2 AND 64
$$;
"""

# The search vector trigger of 0002, now also writing search_words.
PRODUCT_TRIGGER = """
CREATE OR REPLACE FUNCTION catalog_product_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    category_name text := coalesce((SELECT name FROM catalog_category WHERE id = NEW.category_id), '');
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A')
        || setweight(to_tsvector('simple', coalesce(NEW.sku, '')), 'A')
        || setweight(to_tsvector('english', category_name), 'B')
        || setweight(to_tsvector('english', coalesce(NEW.description, '')), 'C');
    NEW.search_words := catalog_search_words(concat_ws(' ', NEW.title, category_name, NEW.description));
    RETURN NEW;
END
$$;
"""

PRODUCT_TRIGGER_0002 = """
CREATE OR REPLACE FUNCTION catalog_product_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A')
        || setweight(to_tsvector('simple', coalesce(NEW.sku, '')), 'A')
        || setweight(to_tsvector('english', coalesce((SELECT name FROM catalog_category WHERE id = NEW.category_id), '')), 'B')
        || setweight(to_tsvector('english', coalesce(NEW.description, '')), 'C');
    RETURN NEW;
END
$$;
"""

# One statement's change to the counts: + each new row's words, - each old row's words, for the text
# (search_words) and for the SKU's letters ("drs" of "DRS-0012": full text matches them, so they are
# no typos, but no typo is corrected into one). Statement triggers with transition tables, so a
# category rename (thousands of rows) or a bulk import is one upsert of its distinct words, not one
# per row; words are written in order, so concurrent writers lock the rows they share in the same
# order. A word in no product's text or SKU is dropped.
VOCABULARY_TRIGGERS = """
CREATE FUNCTION catalog_search_words_apply(words text[], texts bigint[], skus bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO catalog_searchword (word, stem, products, skus)
    SELECT d.word, (tsvector_to_array(to_tsvector('english', d.word)))[1], d.texts, d.skus
    FROM unnest(words, texts, skus) AS d(word, texts, skus)
    ORDER BY d.word
    ON CONFLICT (word) DO UPDATE
        SET products = catalog_searchword.products + EXCLUDED.products, skus = catalog_searchword.skus + EXCLUDED.skus;
    DELETE FROM catalog_searchword WHERE word = ANY(words) AND products <= 0 AND skus <= 0;
$$;

CREATE FUNCTION catalog_search_words_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_text text[] := '{}';  -- every word of every new row, as often as rows have it
    new_sku text[] := '{}';
    old_text text[] := '{}';
    old_sku text[] := '{}';
    words text[];
    texts bigint[];
    skus bigint[];
BEGIN
    -- Only the transition tables this event has are named (a statement naming another would not plan).
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT coalesce(array_agg(w), '{}') INTO new_text FROM new_rows, unnest(new_rows.search_words) AS w;
        SELECT coalesce(array_agg(w), '{}') INTO new_sku FROM new_rows, unnest(catalog_search_words(new_rows.sku)) AS w;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT coalesce(array_agg(w), '{}') INTO old_text FROM old_rows, unnest(old_rows.search_words) AS w;
        SELECT coalesce(array_agg(w), '{}') INTO old_sku FROM old_rows, unnest(catalog_search_words(old_rows.sku)) AS w;
    END IF;
    SELECT array_agg(w ORDER BY w), array_agg(t ORDER BY w), array_agg(k ORDER BY w) INTO words, texts, skus
    FROM (
        SELECT w, sum(text_n) AS t, sum(sku_n) AS k
        FROM (
            SELECT w, 1 AS text_n, 0 AS sku_n FROM unnest(new_text) AS w
            UNION ALL SELECT w, 0, 1 FROM unnest(new_sku) AS w
            UNION ALL SELECT w, -1, 0 FROM unnest(old_text) AS w
            UNION ALL SELECT w, 0, -1 FROM unnest(old_sku) AS w
        ) changes
        GROUP BY w HAVING sum(text_n) <> 0 OR sum(sku_n) <> 0
    ) d;
    IF words IS NOT NULL THEN
        PERFORM catalog_search_words_apply(words, texts, skus);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION catalog_search_words_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_searchword;
    RETURN NULL;
END
$$;

-- Products already there: fill search_words (the trigger above), then count their words.
UPDATE catalog_product SET search_words = NULL;
INSERT INTO catalog_searchword (word, stem, products, skus)
SELECT w, (tsvector_to_array(to_tsvector('english', w)))[1], sum(text_n), sum(sku_n)
FROM (
    SELECT w, 1 AS text_n, 0 AS sku_n FROM catalog_product, unnest(catalog_product.search_words) AS w
    UNION ALL
    SELECT w, 0, 1 FROM catalog_product, unnest(catalog_search_words(catalog_product.sku)) AS w
) words
GROUP BY w;

CREATE TRIGGER catalog_search_words_insert AFTER INSERT ON catalog_product
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_words_count();
CREATE TRIGGER catalog_search_words_update AFTER UPDATE ON catalog_product
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_words_count();
CREATE TRIGGER catalog_search_words_delete AFTER DELETE ON catalog_product
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_words_count();
CREATE TRIGGER catalog_search_words_truncate AFTER TRUNCATE ON catalog_product
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_words_clear();
"""

DROP_VOCABULARY_TRIGGERS = """
DROP TRIGGER IF EXISTS catalog_search_words_truncate ON catalog_product;
DROP TRIGGER IF EXISTS catalog_search_words_delete ON catalog_product;
DROP TRIGGER IF EXISTS catalog_search_words_update ON catalog_product;
DROP TRIGGER IF EXISTS catalog_search_words_insert ON catalog_product;
DROP FUNCTION IF EXISTS catalog_search_words_clear();
DROP FUNCTION IF EXISTS catalog_search_words_count();
DROP FUNCTION IF EXISTS catalog_search_words_apply(text[], bigint[], bigint[]);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_product_sku_upper"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="search_words",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.TextField(), editable=False, null=True, size=None
            ),
        ),
        migrations.CreateModel(
            name="SearchWord",
            fields=[
                ("word", models.TextField(primary_key=True, serialize=False)),
                ("stem", models.TextField(null=True)),
                ("products", models.IntegerField(default=0)),
                ("skus", models.IntegerField(default=0)),
            ],
            options={
                "indexes": [
                    django.contrib.postgres.indexes.GistIndex(
                        fields=["word"], name="catalog_searchword_trgm", opclasses=["gist_trgm_ops"]
                    ),
                    models.Index(fields=["stem"], name="catalog_searchword_stem"),
                ],
            },
        ),
        migrations.RunSQL(WORDS_FUNCTION, "DROP FUNCTION IF EXISTS catalog_search_words(text);"),
        migrations.RunSQL(PRODUCT_TRIGGER, PRODUCT_TRIGGER_0002),
        migrations.RunSQL(VOCABULARY_TRIGGERS, DROP_VOCABULARY_TRIGGERS),
    ]
