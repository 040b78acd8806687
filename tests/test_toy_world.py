"""The toy world: determinism, disjoint splits, hand-checked translations."""

from __future__ import annotations

import re

import pytest

from speechmapper_plugin.tiny_assets.toy_world import (
    ADJECTIVES,
    INTRANSITIVE_VERBS,
    NOUNS,
    PLACES,
    PREPOSITIONS,
    PRONOUNS,
    TRANSITIVE_VERBS,
    Adjective,
    Noun,
    NounPhrase,
    Pronoun,
    Subject,
    ToyWorld,
    Verb,
    intransitive_place,
    predicate,
    transitive,
    vocabulary,
)


def noun(en: str) -> Noun:
    return next(n for n in NOUNS + PLACES if n.en == en)


def adj(en: str) -> Adjective:
    return next(a for a in ADJECTIVES if a.en == en)


def verb(en: str) -> Verb:
    return next(v for v in TRANSITIVE_VERBS + INTRANSITIVE_VERBS if v.en[0] == en)


def pronoun(en: str) -> Pronoun:
    return next(p for p in PRONOUNS if p.en == en)


def prep(en: str) -> tuple[str, str, str]:
    return next(p for p in PREPOSITIONS if p[0] == en)


def np(en_noun: str, en_adj: str | None = None) -> NounPhrase:
    return NounPhrase(noun(en_noun), adj(en_adj) if en_adj else None)


# (sentence built by a template, English, French, German), all written by hand.
HAND_CHECKED = [
    (
        transitive(Subject(np("dog", "small")), verb("see"), np("ball", "red")),
        "The small dog sees the red ball.",
        "Le petit chien voit la balle rouge.",
        "Der kleine Hund sieht den roten Ball.",
    ),
    (
        transitive(Subject(np("cow", "old")), verb("carry"), np("book", "white")),
        "The old cow carries the white book.",
        "La vieille vache porte le livre blanc.",
        "Die alte Kuh trägt das weiße Buch.",
    ),
    (
        transitive(Subject(np("girl", "tired")), verb("take"), np("key", "beautiful")),
        "The tired girl takes the beautiful key.",
        "La fille fatiguée prend la belle clé.",
        "Das müde Mädchen nimmt den schönen Schlüssel.",
    ),
    (
        transitive(Subject(np("horse")), verb("hold"), np("cup", "tired")),
        "The horse holds the tired cup.",
        "Le cheval tient la tasse fatiguée.",
        "Das Pferd hält die müde Tasse.",
    ),
    (
        transitive(Subject(np("king", "grey")), verb("wash"), np("dog", "tired")),
        "The grey king washes the tired dog.",
        "Le roi gris lave le chien fatigué.",
        "Der graue König wäscht den müden Hund.",
    ),
    (
        transitive(Subject(pronoun("I")), verb("paint"), np("flower", "yellow")),
        "I paint the yellow flower.",
        "Je peins la fleur jaune.",
        "Ich male die gelbe Blume.",
    ),
    (
        transitive(Subject(pronoun("we")), verb("take"), np("hat", "green")),
        "We take the green hat.",
        "Nous prenons le chapeau vert.",
        "Wir nehmen den grünen Hut.",
    ),
    (
        transitive(Subject(pronoun("they")), verb("see"), np("car", "big")),
        "They see the big car.",
        "Ils voient la grande voiture.",
        "Sie sehen das große Auto.",
    ),
    (
        intransitive_place(
            Subject(np("cat")), verb("sleep"), prep("under"), np("wall", "old")
        ),
        "The cat sleeps under the old wall.",
        "Le chat dort sous le vieux mur.",
        "Die Katze schläft unter der alten Mauer.",
    ),
    (
        intransitive_place(
            Subject(np("baker", "happy")), verb("work"), prep("in"), np("garden")
        ),
        "The happy baker works in the garden.",
        "Le boulanger content travaille dans le jardin.",
        "Der frohe Bäcker arbeitet im Garten.",
    ),
    (
        intransitive_place(
            Subject(pronoun("she")), verb("read"), prep("near"), np("park", "small")
        ),
        "She reads near the small park.",
        "Elle lit près du petit parc.",
        "Sie liest neben dem kleinen Park.",
    ),
    (
        intransitive_place(
            Subject(pronoun("he")), verb("run"), prep("near"), np("street")
        ),
        "He runs near the street.",
        "Il court près de la rue.",
        "Er läuft neben der Straße.",
    ),
    (
        intransitive_place(
            Subject(np("mouse", "white")), verb("dance"), prep("in"), np("kitchen")
        ),
        "The white mouse dances in the kitchen.",
        "La souris blanche danse dans la cuisine.",
        "Die weiße Maus tanzt in der Küche.",
    ),
    (
        intransitive_place(
            Subject(pronoun("I")), verb("wait"), prep("behind"), np("tent", "black")
        ),
        "I wait behind the black tent.",
        "Je patiente derrière la tente noire.",
        "Ich warte hinter dem schwarzen Zelt.",
    ),
    (
        predicate(np("ball", "red"), adj("small")),
        "The red ball is small.",
        "La balle rouge est petite.",
        "Der rote Ball ist klein.",
    ),
    (
        predicate(np("brother"), adj("happy")),
        "The brother is happy.",
        "Le frère est content.",
        "Der Bruder ist froh.",
    ),
    (
        predicate(np("woman", "young"), adj("white")),
        "The young woman is white.",
        "La jeune femme est blanche.",
        "Die junge Frau ist weiß.",
    ),
]


@pytest.mark.parametrize(("sentence", "en", "fr", "de"), HAND_CHECKED)
def test_hand_checked_translations(sentence, en: str, fr: str, de: str) -> None:
    assert (sentence.en, sentence.fr, sentence.de) == (en, fr, de)


def test_same_seed_same_splits_other_seed_other_splits() -> None:
    a = ToyWorld.generate(3, 200, 20, 20)
    b = ToyWorld.generate(3, 200, 20, 20)
    c = ToyWorld.generate(4, 200, 20, 20)
    assert a == b
    assert [s.en for s in a.train] != [s.en for s in c.train]


def test_splits_have_the_asked_sizes_and_are_disjoint_by_sentence() -> None:
    splits = ToyWorld.generate(0, 3000, 300, 300)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (3000, 300, 300)

    train = {s.en for s in splits.train}
    dev = {s.en for s in splits.dev}
    test = {s.en for s in splits.test}
    assert len(train) == 3000 and len(dev) == 300 and len(test) == 300
    assert not train & dev and not train & test and not dev & test

    # The translations are distinct too: a sentence's French and German
    # determine its English.
    all_sentences = splits.all_sentences()
    assert len({s.fr for s in all_sentences}) == len(all_sentences)
    assert len({s.de for s in all_sentences}) == len(all_sentences)


def test_every_template_is_drawn() -> None:
    splits = ToyWorld.generate(0, 600, 0, 0)
    counts = {t: 0 for t in ("transitive", "intransitive_place", "predicate")}
    for s in splits.train:
        counts[s.template] += 1
    assert min(counts.values()) > 100, counts


def test_english_is_plain_words_espeak_can_say() -> None:
    for s in ToyWorld.generate(1, 2000, 0, 0).train:
        assert re.fullmatch(r"[A-Z][a-z]*( [a-zI]+)*\.", s.en), s.en


def test_no_french_elision_trap() -> None:
    """No "le"/"la"/"je"/"de" before a vowel or h, and no "de le" left uncontracted."""
    for s in ToyWorld.generate(2, 3000, 0, 0).train:
        words = s.fr.lower().rstrip(".").split()
        for first, second in zip(words, words[1:], strict=False):
            if first in ("le", "la", "je", "de"):
                assert second[0] not in "aeiouyhéèêâîôû", s.fr
            assert (first, second) != ("de", "le"), s.fr


def test_words_come_from_the_vocabulary() -> None:
    vocab = {lang: vocabulary(lang) for lang in ("en", "fr", "de")}
    for s in ToyWorld.generate(5, 3000, 0, 0).train:
        for lang in ("en", "fr", "de"):
            words = set(s.text(lang).lower().rstrip(".").split())
            assert words <= vocab[lang], (lang, words - vocab[lang])


def test_vocabulary_size() -> None:
    """Small enough for a tiny LLM's table, large enough to be a language."""
    sizes = {lang: len(vocabulary(lang)) for lang in ("en", "fr", "de")}
    assert 90 <= sizes["en"] <= 150, sizes
    assert 120 <= sizes["fr"] <= 200, sizes
    assert 120 <= sizes["de"] <= 200, sizes


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_dev"):
        ToyWorld.generate(0, 10, -1, 0)
    with pytest.raises(ValueError, match="at most"):
        ToyWorld.generate(0, 10**6, 0, 0)
    with pytest.raises(ValueError, match="no 'es'"):
        vocabulary("es")
    sentence = ToyWorld.generate(0, 1, 0, 0).train[0]
    with pytest.raises(ValueError, match="no 'es'"):
        sentence.text("es")
