"""Typo correction of keyword queries against the catalogue's own words.

catalog_searchword (SearchWord) holds every word of the products' titles, category names,
descriptions and SKUs with how many products have it, kept by triggers on catalog_product. A query
word is known when it is a stored word or a form of one (its English stem is a stored word's stem:
"sneakers", "dresses"); stop words ("the", "for") are left alone, as full text ignores them. Each
other word is replaced by the nearest word of the products' text (never a SKU's letters, which only
make a word known) within the edit budget, by optimal string
alignment distance (Damerau-Levenshtein where a swap of two neighbouring letters is one edit, as
Meilisearch, Typesense and Algolia count typos); ties go to the word more products have.

The budget follows the length of the longer of the typed and the stored word, so that a dropped
letter ("cot" for "coat") is judged by the word it was dropped from: 1 edit from ONE_EDIT_FROM
letters, 2 from TWO_EDITS_FROM. Only runs of letters are words: a token with a digit in it (a SKU,
a size) is never changed, and the rest of the query (quotes, "-" before a word, "or") stays as typed.

Candidates are read in one query: every stored word one edit away (the typed word's one-edit
variants, looked up by primary key: exact, whatever the vocabulary's size; a swap in a short word
leaves it few trigrams in common), and the TRIGRAM_CANDIDATES nearest stored words by trigram
distance (GiST index: two-edit typos of long words, misspelt plurals). So a typed word costs at most
a few hundred index probes and distance computations, whatever its length and the vocabulary's
size; a word longer than any stored word can be within budget of is not looked up.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

WORD = re.compile(r"[^\W\d_]+")  # a run of letters, any script: the trigger's '[^[:alpha:]]+' split
TOKEN = re.compile(r"\S+")
WORD_LETTERS = (2, 64)  # stored words are this long (catalog_search_words in migration 0004)
ONE_EDIT_FROM = 4  # letters of the longer word: one typo allowed
TWO_EDITS_FROM = 9  # two typos allowed
MAX_EDITS = 2
TRIGRAM_CANDIDATES = 40  # stored words read by trigram distance per misspelt word
VARIANTS_UP_TO = 12  # letters: longer words keep most of their trigrams after one edit, so trigrams find them
WORDS_CORRECTED_MAX = 8  # unknown words looked up per query; the rest stay as typed
ALPHABET = string.ascii_lowercase


@dataclass(frozen=True)
class Correction:
    word: str  # as typed (lower case)
    corrected: str  # the stored word it became


@dataclass(frozen=True)
class CorrectedQuery:
    query: str  # the query with each correction in place of the word
    corrections: list[Correction]


def edit_budget(a: str, b: str) -> int:
    longest = max(len(a), len(b))
    return 2 if longest >= TWO_EDITS_FROM else 1 if longest >= ONE_EDIT_FROM else 0


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance of `a` and `b` (insert, delete, change, swap of neighbours:
    one edit each), or `limit + 1` as soon as it must exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if a == b:
        return 0
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else limit + 1


def one_edit_variants(word: str) -> set[str]:
    """Every string one edit from `word`: a letter dropped, swapped with the next, changed, or added
    (a-z and the word's own letters, so other scripts are covered too)."""
    letters = sorted(set(ALPHABET) | set(word))
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    out.discard(word)
    return out


def query_words(query: str) -> list[tuple[int, int, str]]:
    """(start, end, lower-case word) of each word that may be corrected: runs of letters of the
    tokens without a digit."""
    out = []
    for token in TOKEN.finditer(query):
        if any(ch.isdigit() for ch in token.group()):
            continue
        for word in WORD.finditer(token.group()):
            out.append((token.start() + word.start(), token.start() + word.end(), word.group().lower()))
    return out


# Every word is a stored word, a form of one, or a stop word. Not correlated with the product rows, so
# PostgreSQL evaluates it once, before the scan (a one-time filter).
ALL_KNOWN_SQL = """
NOT EXISTS (
    SELECT 1 FROM unnest(%s::text[]) AS q(w)
    CROSS JOIN LATERAL (SELECT (tsvector_to_array(to_tsvector('english', q.w)))[1] AS stem) s
    WHERE s.stem IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM catalog_searchword v WHERE v.word = q.w)
      AND NOT EXISTS (SELECT 1 FROM catalog_searchword v WHERE v.stem = s.stem)
)
"""


def words_known(query: str) -> RawSQL | None:
    """A condition that holds only when every word of `query` is a catalogue word (or a form of one,
    or a stop word); None when the query has no word. A full-text match of a query with a word that
    no product has would find nothing, but only after reading every row: PostgreSQL estimates an
    unknown word to match hundreds of rows, so `EXISTS` (LIMIT 1) picks a sequential scan over the
    GIN index, 110 ms at 60k products. With this condition beside it, the scan is skipped at once."""
    words = sorted({w for _, _, w in query_words(query) if len(w) >= WORD_LETTERS[0]})
    if not words:
        return None
    if any(len(w) > WORD_LETTERS[1] for w in words):  # longer than any stored word
        return RawSQL("FALSE", [], output_field=BooleanField())
    return RawSQL(ALL_KNOWN_SQL, [words], output_field=BooleanField())


def _correctable(word: str) -> bool:
    # 3 letters: one edit to a stored 4-letter word; longer than the longest stored word plus the
    # budget: nothing can be in reach.
    return ONE_EDIT_FROM - 1 <= len(word) <= WORD_LETTERS[1] + MAX_EDITS


LOOKUP_SQL = """
WITH q AS (
    SELECT w, stem,
           EXISTS (SELECT 1 FROM catalog_searchword v WHERE v.word = w)
           OR EXISTS (SELECT 1 FROM catalog_searchword v WHERE v.stem = s.stem) AS known
    FROM (SELECT w, (tsvector_to_array(to_tsvector('english', w)))[1] AS stem FROM unnest(%(words)s::text[]) AS w) s
)
SELECT w, stem, known, NULL::text, NULL::int FROM q
UNION ALL
SELECT NULL, NULL, NULL, word, products FROM catalog_searchword WHERE word = ANY(%(variants)s::text[]) AND products > 0
UNION ALL
SELECT NULL, NULL, NULL, near.word, near.products
FROM q CROSS JOIN LATERAL (
    SELECT word, products FROM catalog_searchword
    WHERE length(word) BETWEEN length(q.w) - 2 AND length(q.w) + 2 AND products > 0
    ORDER BY word <-> q.w
    LIMIT %(near)s
) near
WHERE NOT q.known AND q.stem IS NOT NULL
  AND (length(q.w) + %(max_edits)s >= %(two_edits_from)s OR q.stem <> q.w)  -- else the variants find all in reach
"""


def query_correct(query: str) -> CorrectedQuery | None:
    """`query` with its misspelt words replaced by the catalogue's nearest words, or None when no
    word was changed (every word known, or nothing in reach). One query (which words are known, and
    the candidates of the others); none when the query has no word that could be corrected."""
    spans = [span for span in query_words(query) if _correctable(span[2])]
    words = list(dict.fromkeys(word for _, _, word in spans))[:WORDS_CORRECTED_MAX]
    if not words:
        return None
    variants = sorted({v for w in words if len(w) <= VARIANTS_UP_TO for v in one_edit_variants(w)})
    with connection.cursor() as cursor:
        params = {
            "words": words,
            "variants": variants,
            "near": TRIGRAM_CANDIDATES,
            "max_edits": MAX_EDITS,
            "two_edits_from": TWO_EDITS_FROM,
        }
        cursor.execute(LOOKUP_SQL, params)
        rows = cursor.fetchall()
    # A misspelt plural ("snekers") is also compared through its stem ("sneker"), after the word itself:
    # "trainrs" is "trainers" (one edit) before "train" (one edit from the stem "trainr").
    stems = {w: stem for w, stem, known, _, _ in rows if w and not known and stem}
    candidates = {stored: products for w, _, _, stored, products in rows if w is None}
    best: dict[str, str] = {}
    for word, stem in stems.items():
        ranked = []
        for stored, products in candidates.items():
            distance, through_stem = _within_budget(word, stored), 0
            if distance > MAX_EDITS and stem != word and _correctable(stem):
                distance, through_stem = _within_budget(stem, stored), 1
            if distance <= MAX_EDITS:
                ranked.append((distance, through_stem, -products, stored))
        if ranked:
            best[word] = min(ranked)[-1]
    if not best:
        return None
    corrected, end = [], 0
    for start, stop, word in spans:
        if word in best:
            corrected.append(query[end:start] + best[word])
            end = stop
    corrected.append(query[end:])
    corrections = [Correction(word=w, corrected=best[w]) for w in words if w in best]
    return CorrectedQuery(query="".join(corrected), corrections=corrections)


def _within_budget(typed: str, stored: str) -> int:
    """The distance of the two words when within their budget, else MAX_EDITS + 1."""
    budget = edit_budget(typed, stored)
    distance = osa_distance(typed, stored, budget) if budget else budget + 1
    return distance if distance <= budget else MAX_EDITS + 1
