import numpy as np
import pytest
import spacy
from spacy.tokens import Doc

from spacy_ember.lm.alignment import align_pieces, token_char_spans


@pytest.mark.parametrize(
    "tokens,pieces,expected",
    [
        # pieces carry the leading space (" Merkel"), one piece per word
        ([(0, 6), (7, 13)], [(0, 6), (6, 13)], [(0, 0), (1, 1)]),
        # a word split into three pieces
        ([(0, 9)], [(0, 3), (3, 6), (6, 9)], [(0, 2)]),
        # one piece covering two spaCy tokens ("don't" -> "do", "n't")
        ([(0, 2), (2, 5)], [(0, 5)], [(0, 0), (0, 0)]),
        # multi-byte character split into pieces with the same offsets
        ([(0, 1), (2, 5)], [(0, 1), (0, 1), (1, 5)], [(0, 1), (2, 2)]),
        # a token no piece covers (dropped characters) gets the next piece
        ([(0, 1), (2, 3), (4, 5)], [(0, 1), (4, 5)], [(0, 0), (1, 1), (1, 1)]),
        # a trailing token nothing covers maps to the lookahead row
        ([(0, 1), (2, 3)], [(0, 1)], [(0, 0), (1, 1)]),
        # no pieces at all
        ([(0, 1)], [], [(0, 0)]),
        # no tokens
        ([], [(0, 1)], np.zeros((0, 2))),
    ],
)
def test_align_pieces(tokens, pieces, expected):
    got = align_pieces(np.array(tokens).reshape(-1, 2), np.array(pieces).reshape(-1, 2))
    assert got.tolist() == np.asarray(expected).reshape(-1, 2).tolist()
    assert np.all(got[:, 0] <= got[:, 1])


def test_token_char_spans_keep_whitespace():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["Hello", "\n\n", "Berlin"], spaces=[True, False, False])
    assert token_char_spans(doc).tolist() == [[0, 5], [6, 8], [8, 14]]
