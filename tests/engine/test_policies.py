"""Commit rules of the streaming policies, on hand-made hypotheses (pure code, no model)."""

from __future__ import annotations

import pytest

from roomscribe.engine.policies import AlignAtt, Hypothesis, LocalAgreement, back_off_to_word, make_policy


def hyp(tokens, ends=None, starts=None, content=5.0):
    ends = ends or [0.3 * (i + 1) for i in range(len(tokens))]
    starts = starts if starts is not None else [True] * len(tokens)
    return Hypothesis(tokens=tokens, token_ends=ends, word_starts=starts, content_seconds=content)


def test_local_agreement_commits_nothing_from_a_single_hypothesis():
    la = LocalAgreement()
    assert la.commit_count(hyp([1, 2, 3, 4])) == 0


def test_local_agreement_commits_the_agreed_prefix_of_two_hypotheses():
    la = LocalAgreement()
    la.commit_count(hyp([1, 2, 3, 9]))
    # Agreement on [1, 2, 3]; the last token of a hypothesis is never a whole word yet.
    assert la.commit_count(hyp([1, 2, 3, 4, 5])) == 3


def test_local_agreement_history_follows_commits():
    la = LocalAgreement()
    la.commit_count(hyp([1, 2, 3]))
    n = la.commit_count(hyp([1, 2, 3, 4]))
    assert n == 3
    la.committed(n)
    # The next hypothesis continues after the committed prefix: it agrees with the remainder [4].
    assert la.commit_count(hyp([4, 5, 6])) == 1


def test_local_agreement_backs_off_to_a_word_boundary():
    la = LocalAgreement()
    starts = [True, False, True, False, True]  # words: [1 2] [3 4] [5]
    la.commit_count(hyp([1, 2, 3, 7, 5], starts=starts))
    assert la.commit_count(hyp([1, 2, 3, 4, 5], starts=starts)) == 2


def test_alignatt_commits_tokens_clear_of_the_window_end():
    aa = AlignAtt(frame_threshold=25)  # 0.5 s
    h = hyp([1, 2, 3, 4, 5], ends=[0.5, 1.0, 1.5, 2.2, 2.4], content=2.5)
    # Tokens ending after 2.0 s are too close to the end; token 3 starts a word, so 3 commit.
    assert aa.commit_count(h) == 3


def test_alignatt_threshold_option_moves_the_commit_point():
    h = hyp([1, 2, 3, 4, 5], ends=[0.5, 1.0, 1.5, 2.2, 2.4], content=2.5)
    assert AlignAtt(frame_threshold=5).commit_count(h) == 4
    assert AlignAtt(frame_threshold=150).commit_count(h) == 0


def test_alignatt_waits_on_tokens_the_model_doubts():
    h = hyp([1, 2, 3, 4, 5], ends=[0.5, 1.0, 1.5, 2.2, 2.4], content=4.0)
    h.token_probs = [0.9, 0.9, 0.1, 0.9, 0.9]
    assert AlignAtt(frame_threshold=5).commit_count(h) == 2


def test_alignatt_commits_nothing_from_a_sliver_of_audio():
    h = hyp([1, 2, 3], ends=[0.1, 0.2, 0.3], content=0.6)
    assert AlignAtt(frame_threshold=5).commit_count(h) == 0


def test_back_off_never_commits_the_last_word():
    h = hyp([1, 2, 3], starts=[True, True, True])
    assert back_off_to_word(3, h) == 2


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="localagreement, alignatt"):
        make_policy("greedy")


def test_a_decoder_restart_of_the_committed_text_is_cut():
    from roomscribe.engine.quality import cut_restart, trim_repetition

    vocab = {1: " printing", 2: " in", 3: " the", 4: " only", 5: " sense", 6: " concerned.", 7: " Printing"}
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    assert cut_restart([6, 7, 2, 3, 4], [1, 2, 3, 4, 5], decode) == [6]
    assert cut_restart([6, 2, 3], [1, 2, 3, 4, 5], decode) == [6, 2, 3]
    assert trim_repetition([5, 6, 5, 6, 5, 6, 5, 6], []) == [5, 6]
    assert trim_repetition([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], []) == [1, 2, 3, 4, 5]
