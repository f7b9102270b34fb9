"""halfvec storage: a version's vectors can live in a float16 `embedding_half` column
beside the float32 `embedding` one. Every existing row keeps its vector where it is, and every
existing serving state says `vector`, which is where its vectors are. Dropping NOT NULL and adding
a NULL column rewrite nothing; the check constraint reads the table once."""

from django.db import migrations, models

import search.fields


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0006_near_duplicate_proxy"),
    ]

    operations = [
        migrations.AddField(
            model_name="servingstate",
            name="storage",
            field=models.CharField(
                choices=[("vector", "vector (float32)"), ("halfvec", "halfvec (float16)")],
                default="vector",
                help_text="How the version's vectors are stored: float32 vector or float16 halfvec.",
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="imageembedding",
            name="embedding",
            field=search.fields.VectorField(null=True),
        ),
        migrations.AddField(
            model_name="imageembedding",
            name="embedding_half",
            field=search.fields.HalfVectorField(null=True),
        ),
        migrations.AddConstraint(
            model_name="imageembedding",
            constraint=models.CheckConstraint(
                condition=models.Q(("embedding__isnull", False), ("embedding_half__isnull", True))
                | models.Q(("embedding__isnull", True), ("embedding_half__isnull", False)),
                name="one_vector_column_per_embedding",
            ),
        ),
    ]
