"""Typo tolerance of keyword search (python bench/search.py --typos): how often a misspelt word still
finds the intended word's products first, false corrections of words typed right, and the database
time of the corrected path.

Typos are made from the catalogue's category and title words, 1 to 4 edits of one kind each (a letter
dropped, added, changed, or two neighbouring letters swapped), `samples` distinct typos per word, kind
and count; a typo that is itself a catalogue word is left out (a word typed right always wins). A
query succeeds when its first result (GET /api/products's first row) is a product the intended word
finds by full text. Fashion-MNIST's words are short (no word has 9 letters), so a second set of
apparel titles with longer words (APPAREL) is added for the run inside a transaction that is rolled
back: the vocabulary triggers count them, and the catalogue is as it was afterwards.

False corrections: every vocabulary word and its plural, searched as typed, must come back with no
`corrected_query`. Timing: the database time of what a results page reads (product_search, the count,
a page of 48 and its images), as the keyword benchmark in bench/search.py measures it.
"""

from __future__ import annotations

import random
import string
import sys
import time

from bench.common import DbTimer, LoadSampler, percentiles_ms, table, write_report

KINDS = ("dropped", "added", "changed", "swapped")
EDITS = (1, 2, 3, 4)
TARGETS = {"one_edit_min_share": 0.95, "two_edits_min_share": 0.80, "false_corrections": 0, "corrected_p50_db_ms": 20.0}
# Apparel titles with the longer words shops sell (9 letters and more for two-edit typos), five products
# each, in four categories of their own.
APPAREL = {
    "Knitwear": [
        "Cashmere turtleneck sweater",
        "Cable knit cardigan",
        "Merino crewneck jumper",
        "Ribbed sleeveless camisole",
    ],
    "Outerwear": [
        "Waterproof windbreaker jacket",
        "Quilted puffer waistcoat",
        "Double breasted overcoat",
        "Lightweight raincoat",
        "Herringbone blazer",
        "Houndstooth trench coat",
        "Hooded sweatshirt",
        "Polyester tracksuit",
    ],
    "Footwear": [
        "Suede moccasins",
        "Canvas espadrilles",
        "Leather loafers",
        "Platform stiletto heels",
        "Breathable trainers",
    ],
    "Accessories": [
        "Crossbody messenger satchel",
        "Leather briefcase",
        "Embroidered backpack",
        "Patterned silk scarf",
        "Corduroy dungarees",
        "Striped drawstring joggers",
        "Denim jumpsuit",
        "Chiffon blouse",
        "Velvet tuxedo",
    ],
}
PER_TITLE = 5


def log(message: str) -> None:
    print(f"[typos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def typo(word: str, kind: str, edits: int, rng: random.Random) -> str | None:
    """`word` with `edits` edits of `kind` at distinct places, or None when the word is too short."""
    letters = list(word)
    if kind == "dropped":
        if len(word) - edits < 2:
            return None
        for i in sorted(rng.sample(range(len(letters)), edits), reverse=True):
            del letters[i]
    elif kind == "added":
        for _ in range(edits):
            letters.insert(rng.randrange(len(letters) + 1), rng.choice(string.ascii_lowercase))
    elif kind == "changed":
        if edits > len(word):
            return None
        for i in rng.sample(range(len(letters)), edits):
            letters[i] = rng.choice([c for c in string.ascii_lowercase if c != letters[i]])
    else:  # swapped: non-overlapping pairs of different neighbouring letters
        pairs = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
        rng.shuffle(pairs)
        chosen: list[int] = []
        for i in pairs:
            if all(abs(i - j) > 1 for j in chosen):
                chosen.append(i)
            if len(chosen) == edits:
                break
        if len(chosen) < edits:
            return None
        for i in chosen:
            letters[i], letters[i + 1] = letters[i + 1], letters[i]
    return "".join(letters)


def catalogue_words() -> tuple[list[str], set[str]]:
    """(the category and title words of 3+ letters, every vocabulary word)."""
    from django.db import connection

    from catalog.models import SearchWord

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT w FROM (SELECT title AS body FROM catalog_product UNION SELECT name FROM catalog_category) t,"
            " regexp_split_to_table(lower(t.body), '[^[:alpha:]]+') AS w WHERE length(w) >= 3"
        )
        words = sorted(r[0] for r in cursor.fetchall())
    return words, set(SearchWord.objects.values_list("word", flat=True))


class SplitTimer(DbTimer):
    """DbTimer that also sums the statements that read the vocabulary alone (the correction lookups)."""

    def __init__(self):
        super().__init__()
        self.lookups = 0.0

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - t
            self.seconds += elapsed
            if "catalog_searchword" in sql and "catalog_product" not in sql:
                self.lookups += elapsed


def page_read(query: str, timer: SplitTimer | None = None):
    """(database seconds, results, first product id) of a results page for `query`."""
    from django.core.paginator import Paginator
    from django.db import connection

    from catalog.keyword_search import product_search

    timer = timer or SplitTimer()
    with connection.execute_wrapper(timer):
        results = product_search(query=query)
        page = Paginator(results.pages(), 48).get_page(1)
        rows = list(page.object_list)
        [p.primary_image for p in rows]
    return timer.seconds, results, rows[0].pk if rows else None


def finds(word: str, product_id: int | None) -> bool:
    from django.contrib.postgres.search import SearchQuery

    from catalog.keyword_search import SEARCH_CONFIG
    from catalog.models import Product

    if product_id is None:
        return False
    return Product.objects.filter(pk=product_id, search_vector=SearchQuery(word, config=SEARCH_CONFIG)).exists()


def measure(words: list[str], vocabulary: set[str], samples: int, seed: int, origin: dict[str, str]) -> dict:
    rng = random.Random(seed)
    cells: dict[tuple[str, str, int, str], list[bool]] = {}
    corrected_db, lookups_db, typed_right_db, fallback_db, skipped, misses = [], [], [], [], 0, []
    for n, word in enumerate(words):
        for kind in KINDS:
            for edits in EDITS:
                seen: set[str] = set()
                for _ in range(samples * 10):
                    if len(seen) == samples:
                        break
                    typed = typo(word, kind, edits, rng)
                    if typed is None:
                        break
                    if typed in vocabulary:
                        skipped += 1
                        continue
                    seen.add(typed)
                for typed in sorted(seen):
                    timer = SplitTimer()
                    seconds, results, first = page_read(typed, timer)
                    if results.corrected_query:
                        corrected_db.append(seconds)
                        lookups_db.append(timer.lookups)
                        typed_right_db.append(page_read(results.corrected_query)[0])  # the same page, no typo
                    else:
                        fallback_db.append(seconds)
                    band = "9+" if len(word) >= 9 else "4-8" if len(word) >= 4 else "3"
                    hit = finds(word, first)
                    cells.setdefault((origin[word], kind, edits, band), []).append(hit)
                    if not hit and (edits == 1 and band != "3" or edits == 2 and band == "9+"):  # the targets' typos
                        misses.append(
                            {
                                "word": word,
                                "typed": typed,
                                "kind": kind,
                                "edits": edits,
                                "corrected_query": results.corrected_query,
                                "match": results.match,
                            }
                        )
        if n % 10 == 9:
            log(f"{n + 1} of {len(words)} words")
    return {
        "cells": cells,
        "corrected_db": corrected_db,
        "lookups_db": lookups_db,
        "typed_right_db": typed_right_db,
        "fallback_db": fallback_db,
        "skipped_typos_that_are_words": skipped,
        "misses": misses,
    }


def false_corrections(vocabulary: set[str]) -> dict:

    words = sorted(vocabulary)
    plurals = {
        w + ("es" if w.endswith(("sh", "ch", "x")) else "s"): w for w in words if len(w) >= 3 and not w.endswith("s")
    }
    exact_db, wrong, to_singular = [], [], []
    for word in words + sorted(plurals):
        seconds, results, _first = page_read(word)
        exact_db.append(seconds)
        if results.corrected_query is None:
            continue
        if results.corrected_query == plurals.get(word):  # a plural full text does not stem to its word
            to_singular.append(word)
        else:
            wrong.append({"word": word, "corrected": results.corrected_query})
    return {
        "sample": len(words) + len(plurals),
        "words": len(words),
        "plurals": len(plurals),
        "false_corrections": wrong,
        "plurals_corrected_to_their_word": to_singular,
        "exact_db": exact_db,
    }


def share(cells: dict, *, origin: str | None = None, kind: str, edits: int, bands: tuple[str, ...]) -> dict:
    hits = [
        h
        for (o, k, e, b), v in cells.items()
        if (origin is None or o == origin) and k == kind and e == edits and b in bands
        for h in v
    ]
    return {"n": len(hits), "share": round(sum(hits) / len(hits), 3) if hits else None}


def typos_main(args) -> int:
    """bench/search.py --typos: needs the catalogue only (bench/setup_data.py imports it)."""
    from django.db import transaction

    from catalog.models import Category, Product

    started = time.monotonic()
    products = Product.objects.count()
    if not products:
        print("No products in the bench database: run bench/setup_data.py (--quick for 5,000).", file=sys.stderr)
        return 1
    samples = args.typo_samples
    with LoadSampler() as load, transaction.atomic():
        fashion_words, _ = catalogue_words()
        for name, titles in APPAREL.items():
            category = Category.objects.create(name=name, slug=f"bench-typos-{name.lower()}")
            first = Product.objects.count() * 10
            Product.objects.bulk_create(  # SKUs without words: they would be vocabulary words too
                [
                    Product(sku=f"T-{first + n}", title=title, category=category, price=30 + n % PER_TITLE)
                    for n, title in enumerate(t for t in titles for _ in range(PER_TITLE))
                ]
            )
        words, vocabulary = catalogue_words()
        origin = {w: "fashion-mnist" if w in fashion_words else "apparel" for w in words}
        log(
            f"{products} products (+{sum(map(len, APPAREL.values())) * PER_TITLE} apparel, rolled back after); "
            f"{len(words)} category and title words ({len(fashion_words)} Fashion-MNIST), vocabulary of {len(vocabulary)}"
        )
        for w in words[:3]:
            page_read(w)  # warm-up
        found = measure(words, vocabulary, samples, args.seed, origin)
        log("false corrections over the vocabulary and its plurals")
        false = false_corrections(vocabulary)
        transaction.set_rollback(True)

    cells = found["cells"]
    rows = []
    for label, bands in (("words of 4+ letters", ("4-8", "9+")), ("words of 9+ letters", ("9+",))):
        for kind in KINDS:
            row = {"words": label, "kind": kind}
            for edits in EDITS:
                cell = share(cells, kind=kind, edits=edits, bands=bands)
                row[f"e{edits}"], row[f"n{edits}"] = cell["share"], cell["n"]
            rows.append(row)
    by_origin = {
        o: {kind: share(cells, origin=o, kind=kind, edits=1, bands=("4-8", "9+")) for kind in KINDS}
        for o in ("fashion-mnist", "apparel")
    }
    corrected = percentiles_ms(found["corrected_db"])
    lookups = percentiles_ms(found["lookups_db"])
    typed_right = percentiles_ms(found["typed_right_db"])
    fallback = percentiles_ms(found["fallback_db"])
    exact = percentiles_ms(false["exact_db"])
    print()
    print(
        table(
            rows,
            [("words", f"first result is the intended word's ({products} products)", "s"), ("kind", "typo", "s")]
            + [(f"e{e}", f"{e} edit{'s' if e > 1 else ''}", ".3f") for e in EDITS]
            + [(f"n{e}", f"n{e}", "d") for e in EDITS],
        )
    )
    print()
    print(
        table(
            [{"what": o, **{kind: v["share"] for kind, v in by_kind.items()}} for o, by_kind in by_origin.items()],
            [("what", "one edit, words of 4+ letters", "s")] + [(kind, kind, ".3f") for kind in KINDS],
        )
    )
    print()
    print(
        table(
            [
                {"what": k, **v}
                for k, v in (
                    ("corrected path (typo, then the corrected words' page)", corrected),
                    ("  of which the vocabulary lookup", lookups),
                    ("  the same pages typed right", typed_right),
                    ("no correction in reach (trigram fallback)", fallback),
                    ("vocabulary words and plurals typed right", exact),
                )
            ],
            [
                ("what", "results page, db ms", "s"),
                ("p50", "p50", ".2f"),
                ("p95", "p95", ".2f"),
                ("p99", "p99", ".2f"),
                ("n", "n", "d"),
            ],
        )
    )
    print(
        f"false corrections: {len(false['false_corrections'])} of {false['words']} vocabulary words and {false['plurals']} "
        f"plurals typed right"
        + (f": {false['false_corrections'][:10]}" if false["false_corrections"] else "")
        + f"; plurals corrected to their own word: {false['plurals_corrected_to_their_word']}"
    )
    print(f"one- and two-edit misses: {len(found['misses'])} {found['misses'][:12]}")
    one = {kind: share(cells, kind=kind, edits=1, bands=("4-8", "9+"))["share"] for kind in KINDS}
    two = {kind: share(cells, kind=kind, edits=2, bands=("9+",))["share"] for kind in KINDS}
    targets = {
        "one_edit_min_share": {"target": TARGETS["one_edit_min_share"], "value": min(one.values()), "by_kind": one},
        "two_edits_min_share": {"target": TARGETS["two_edits_min_share"], "value": min(two.values()), "by_kind": two},
        "false_corrections": {"target": 0, "value": len(false["false_corrections"])},
        "corrected_p50_db_ms": {"target": TARGETS["corrected_p50_db_ms"], "value": corrected["p50"]},
    }
    for key, t in targets.items():
        low_is_good = key in ("false_corrections", "corrected_p50_db_ms")
        t["met"] = t["value"] is not None and (t["value"] <= t["target"] if low_is_good else t["value"] >= t["target"])
        print(
            f"{key}: {t['value']} (target {'<=' if low_is_good else '>='} {t['target']}) {'met' if t['met'] else 'MISSED'}"
        )
    path = write_report(
        "search_typos",
        script="search",
        quick=args.quick,
        argv=sys.argv[1:],
        started=started,
        load=load.summary(),
        catalogue={
            "products": products,
            "apparel_products_added_and_rolled_back": sum(map(len, APPAREL.values())) * PER_TITLE,
            "words": len(words),
            "fashion_mnist_words": fashion_words,
            "vocabulary": len(vocabulary),
        },
        samples_per_word_kind_edits=samples,
        seed=args.seed,
        shares=rows,
        one_edit_by_origin=by_origin,
        skipped_typos_that_are_words=found["skipped_typos_that_are_words"],
        db_ms={
            "corrected": corrected,
            "correction_lookups": lookups,
            "corrected_pages_typed_right": typed_right,
            "fallback": fallback,
            "vocabulary_typed_right": exact,
        },
        false_corrections={k: v for k, v in false.items() if k != "exact_db"},
        misses_one_two_edits=found["misses"],
        targets=targets,
    )
    print(f"\nwall time {time.monotonic() - started:.0f} s; load {load.summary()}; wrote {path}")
    return 0
