"""The Numba kernels against rapidfuzz, the exactness oracle: zero mismatches allowed."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from metrics.levenshtein import (
    distance_index_pairs,
    distance_one_to_many,
    distance_pairs,
    kernels,
    pack,
    word_distance_one_to_many,
    word_distance_pairs,
)

# ASCII, Latin-1, combining marks, CJK, emoji (astral plane), a ZWJ sequence piece
ALPHABET = st.sampled_from([*"ab c.\n", "é", "e\u0301", "\u0301", "ß", "漢", "字", "😀", "👍🏽", "\u200d", "Ω"])
TEXT = st.lists(ALPHABET, max_size=160).map("".join)


def edit_script(text: str, rng: random.Random, n_ops: int, alphabet: str = "abcdefgh é😀漢") -> str:
    chars = list(text)
    for _ in range(n_ops):
        op = rng.randrange(3)
        i = rng.randrange(len(chars) + 1)
        if op == 0 or not chars:
            chars.insert(i, rng.choice(alphabet))
        elif op == 1:
            del chars[min(i, len(chars) - 1)]
        else:
            chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
    return "".join(chars)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=12))
def test_pairs_match_rapidfuzz(pairs: list[tuple[str, str]]) -> None:
    a, b = zip(*pairs, strict=True)
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in pairs]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(ALPHABET, min_size=60, max_size=520).map("".join), st.integers(0, 45), st.integers(0)),
        min_size=1,
        max_size=7,
    )
)
def test_similar_pairs_match_rapidfuzz(specs: list[tuple[str, int, int]]) -> None:
    """Edited copies: the one-word and small-band paths, two pairs at a time with uneven lengths, and
    distances on both sides of the band's limit (31), where a pair falls back to the blocked algorithm."""
    a = [base for base, _, _ in specs]
    b = [edit_script(base, random.Random(seed), n_ops) for base, n_ops, seed in specs]
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)]


@settings(max_examples=200, deadline=None)
@given(TEXT, st.lists(TEXT, min_size=1, max_size=40))
def test_one_to_many_matches_rapidfuzz(x: str, candidates: list[str]) -> None:
    assert distance_one_to_many(x, candidates).tolist() == [Levenshtein.distance(x, c) for c in candidates]


@settings(max_examples=100, deadline=None)
@given(st.integers(65, 300), st.integers(0, 2**32), st.integers(1, 33))
def test_dissimilar_novelty_candidates_match_rapidfuzz(length: int, seed: int, count: int) -> None:
    """A novelty check: unrelated texts of similar length, which the small band rejects (more than 31 apart)
    and the blocked algorithm then computes in one full pass (patterns up to 256) or two (longer)."""
    rng = random.Random(seed)
    alphabet = "abcdefgh ij.é漢😀"

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(length + rng.randrange(-20, 21)))

    x, candidates = text(), [text() for _ in range(count)]
    assert distance_one_to_many(x, candidates).tolist() == [Levenshtein.distance(x, c) for c in candidates]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(300, 3000), st.sampled_from(["ascii", "latin", "wide"]))
def test_long_unrelated_texts_match_rapidfuzz(seed: int, length: int, script: str) -> None:
    """Long unrelated texts (real novelty candidates: thousands of characters, lengths apart or alike), where the
    band covers every block and the unbanded kernel runs; wide code points take the hashed table."""
    rng = random.Random(seed)
    alphabet = {"ascii": "abcdefghij klmnop.,\n", "latin": "aeiouéèçß nrst", "wide": "ab 漢字😀👍🏽\u200dΩé"}[script]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(length // 3, length)))

    strings = [text() for _ in range(6)]
    i, j = np.triu_indices(len(strings), 1)
    expected = [Levenshtein.distance(strings[x], strings[y]) for x, y in zip(i, j, strict=True)]
    assert distance_index_pairs(strings, i, j).tolist() == expected
    assert distance_pairs([strings[x] for x in i], [strings[y] for y in j]).tolist() == expected


@pytest.mark.parametrize("m", [65, 127, 128, 129, 200])
@pytest.mark.parametrize("extra", [0, 1, 2, 63, 64, 65])
def test_the_two_column_wavefront_at_block_and_parity_edges(m: int, extra: int) -> None:
    """The unbanded kernel runs text columns in pairs: odd and even text lengths, patterns just over a block
    boundary, text characters the pattern lacks (wide and narrow) and ones it holds in its hashed table."""
    rng = random.Random(m * 100 + extra)
    pattern = "".join(rng.choice("xyz 漢😀") for _ in range(m))
    for alphabet in ("abc", "xyz 漢😀Ω", "😀"):
        text = "".join(rng.choice(alphabet) for _ in range(m + extra))
        assert distance_pairs([pattern], [text]).tolist() == [Levenshtein.distance(pattern, text)]


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_the_bag_bound_never_exceeds_the_distance(a: str, b: str) -> None:
    """The bound that lets unrelated pairs skip the narrow band is a true lower bound (folded code points too)."""
    buf, start, end = pack([a, b])
    counts = np.zeros(256, np.int64)
    bound = kernels._bag_bound(buf, start[0], end[0] - start[0], buf, start[1], end[1] - start[1], counts)
    assert bound <= Levenshtein.distance(a, b)
    assert bound >= abs(len(a) - len(b))
    assert not counts.any()  # left zeroed for the next pair


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=12), st.data())
def test_index_pairs_match_rapidfuzz(strings: list[str], data: st.DataObject) -> None:
    index = st.integers(0, len(strings) - 1)
    pairs = data.draw(st.lists(st.tuples(index, index), max_size=60))
    i = np.array([p[0] for p in pairs], np.int64)
    j = np.array([p[1] for p in pairs], np.int64)
    expected = [Levenshtein.distance(strings[a], strings[b]) for a, b in pairs]
    assert distance_index_pairs(strings, i, j).tolist() == expected
    assert distance_index_pairs(strings, i, j, parallel=False).tolist() == expected


def test_index_pairs_reject_mismatched_indices() -> None:
    with pytest.raises(ValueError, match="same length"):
        distance_index_pairs(["a", "b"], np.array([0, 1]), np.array([0]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=8))
def test_word_level_matches_rapidfuzz(pairs: list[tuple[str, str]]) -> None:
    a, b = zip(*pairs, strict=True)
    expected = [Levenshtein.distance(x.split(), y.split()) for x, y in pairs]
    assert word_distance_pairs(a, b).tolist() == expected


@pytest.mark.parametrize("length", [1, 2, 63, 64, 65, 127, 128, 129, 1_000, 4_096, 20_000])
def test_long_strings_with_random_edit_scripts(length: int) -> None:
    rng = random.Random(length)
    base = "".join(rng.choice("abcdefgh ijklmnop é😀漢\u0301") for _ in range(length))
    a, b = [], []
    for n_ops in (0, 1, 3, 10, max(1, length // 10), length):
        a.append(base)
        b.append(edit_script(base, rng, n_ops))
        a.append(edit_script(base, rng, n_ops))  # both sides edited
        b.append(edit_script(base, rng, n_ops))
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)]


def test_edge_cases() -> None:
    a = ["", "", "abc", "same", "😀", "e\u0301", "ab" * 100, "x" * 300]
    b = ["", "abc", "", "same", "😁", "é", "ba" * 100, "y" * 300]
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)]
    assert distance_pairs([], []).tolist() == []
    assert distance_one_to_many("abc", []).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        distance_pairs(["a"], [])


def test_many_distinct_wide_characters() -> None:
    rng = random.Random(5)
    wide = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # more distinct code points than one word holds
    a = ["".join(rng.choice(wide) for _ in range(2_500)) for _ in range(3)]
    b = [edit_script(s, rng, 200, alphabet="".join(wide[:50])) for s in a]
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)]


def test_word_one_to_many_and_lone_surrogates() -> None:
    assert word_distance_one_to_many("a b c", ["a b c", "a c", ""]).tolist() == [0, 1, 3]
    for strings in (["\ud800x", ""], ["\ud800x", "", "y" * 200_000]):  # fixed-width and joined packing
        buf, starts, ends = pack(strings)
        assert [buf[s:e].tolist() for s, e in zip(starts, ends, strict=True)][:2] == [[0xD800, ord("x")], []]
    assert distance_pairs(["\ud800x"], ["x"]).tolist() == [1]
    assert isinstance(distance_pairs(["a"], ["b"]), np.ndarray)


@pytest.mark.timeout(120, method="thread")  # the old bug hung inside compiled code, out of a signal's reach
def test_hash_table_slots_are_reused_across_many_pairs() -> None:
    """Regression: clearing wide-character slots by re-probing leaked slots, and after a few hundred pairs of
    CJK text in one chunk the table filled up and the kernel looped forever. Every path (one word, small band,
    blocks) sees many distinct code points >= 256 here."""
    rng = random.Random(7)
    wide = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 5000))
    a = ["".join(rng.choice(wide) for _ in range(rng.choice((40, 100, 300, 700)))) for _ in range(400)]
    b = [edit_script(s, rng, rng.randint(1, 60), alphabet=wide) for s in a]
    assert distance_pairs(a, b).tolist() == [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)]


def test_warm_up_compiles_every_form_the_worker_uses() -> None:
    """After warm_up, no call shape (even/uneven lengths, one-to-many, index pairs, parallel) compiles again:
    a new specialisation in the worker's first batch costs seconds of compilation there."""
    from metrics import levenshtein
    from metrics.levenshtein import kernels as compiled
    from metrics.novelty import RecentOutputs, novelty, novelty_many

    levenshtein.warm_up()
    kernels = (compiled.chunk_distances, compiled.parallel_distances)
    before = [list(k.signatures) for k in kernels]
    texts = ["short", "x" * 3000, "héllo wörld 😀" * 20, "a"]
    for level in ("word", "char"):
        novelty_many(texts * 20, RecentOutputs(32, tuple(texts)), level=level)
        novelty_many(["abc", "abd"] * 200, RecentOutputs(32), parallel=True, level=level)
        novelty("x" * 3000, RecentOutputs(32, tuple(texts)), level)
    distance_pairs(texts, texts[::-1])
    distance_pairs(["x" * 40_000, "y"], ["z", "w"])
    distance_one_to_many("héllo", texts * 100)
    assert [list(k.signatures) for k in kernels] == before
