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


def test_a_decoder_restart_of_the_committed_text_is_cut_where_its_copy_has_no_audio():
    from roomscribe.engine.quality import Timing, cut_restart

    vocab = {1: " printing", 2: " in", 3: " the", 4: " only", 5: " sense", 6: " concerned.", 7: " Printing"}
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    prefix = [1, 2, 3, 4, 5]  # 0.0 - 2.0 s
    said = [0.0, 0.4, 0.8, 1.2, 1.6, 2.0]
    # The restart's words squeezed into the window's last moment: a decoder restart.
    squeezed = Timing([*said, 2.4, 2.4, 2.4, 2.4], [*said[1:], 2.4, 2.42, 2.42, 2.42, 2.42], audio_seconds=2.45)
    everything = [0, 1, 2, 3, 4]
    assert cut_restart([6, 7, 2, 3, 4], prefix, decode, squeezed, everything) == [0]
    # The same words with audio of their own: the speaker began again.
    spoken = Timing([*said, 2.4, 2.8, 3.2, 3.6], [*said[1:], 2.4, 2.8, 3.2, 3.6, 4.0], audio_seconds=4.2)
    assert cut_restart([6, 7, 2, 3, 4], prefix, decode, spoken, everything) == everything
    assert cut_restart([6, 2, 3], prefix, decode, squeezed, [0, 1, 2]) == [0, 1, 2]  # not the head


def test_a_repeated_pattern_is_cut_only_where_the_alignment_squeezes_it():
    from roomscribe.engine.quality import Timing
    from roomscribe.engine.quality import trim_repetition as trim

    def timing(spans, audio_seconds):
        return Timing([a for a, _ in spans], [b for _, b in spans], audio_seconds)

    def trim_repetition(tokens, prefix, timing):
        return [tokens[k] for k in trim(tokens, prefix, timing)]

    loop = timing([(0.0, 0.3), (0.3, 0.6)] + [(0.6, 0.6)] * 6, audio_seconds=0.62)
    assert trim_repetition([5, 6, 5, 6, 5, 6, 5, 6], [], loop) == [5, 6]
    sentence = [(0.4 * i, 0.4 * i + 0.4) for i in range(5)]
    said_twice = timing(sentence + [(a + 2.3, b + 2.3) for a, b in sentence], audio_seconds=4.5)
    assert trim_repetition([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], [], said_twice) == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    looped = timing(sentence + [(2.0, 2.0)] * 5, audio_seconds=2.02)
    assert trim_repetition([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], [], looped) == [1, 2, 3, 4, 5]
    # Said twice, then the decoder loops: both spoken copies stay.
    then_loop = timing(sentence + [(a + 2.3, b + 2.3) for a, b in sentence] + [(4.3, 4.3)] * 5, audio_seconds=4.32)
    assert trim_repetition([1, 2, 3, 4, 5] * 3, [], then_loop) == [1, 2, 3, 4, 5] * 2
    # The speaker has begun the sentence again, the decoder finished it: the spoken part stays.
    begun = timing(sentence + [(2.3, 2.7), (2.7, 3.1)] + [(3.1, 3.1)] * 3, audio_seconds=3.12)
    assert trim_repetition([1, 2, 3, 4, 5] * 2, [], begun) == [1, 2, 3, 4, 5, 1, 2]
    # The decoder's copies first, squeezed into the window's start; the spoken one last.
    late = timing([(0.0, 0.0)] * 5 + sentence[:1] + [(a + 0.4, b + 0.4) for a, b in sentence[1:]], audio_seconds=2.5)
    assert trim_repetition([1, 2, 3, 4, 5] * 2, [], late) == [1, 2, 3, 4, 5]
    # A loop that starts in the committed prefix: the generated copy goes.
    assert trim_repetition([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], looped) == []


def test_a_loop_is_cut_between_its_copies_where_the_spoken_copy_stays_whole():
    from roomscribe.engine.quality import Timing, trim_repetition

    vocab = {1: " To", 2: " say", 3: " a", 4: " few", 5: " words", 6: "."}
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    # "a few words. To say" squeezed into the first instant, "a few words." on its audio with
    # "To say" (said before it) aligned in no time, then the copy again past the audio's end.
    tokens = [3, 4, 5, 6, 1, 2] * 2 + [3, 4, 5]
    spans = [(0.0, 0.16)] + [(0.16, 0.16)] * 4 + [(0.16, 0.4), (0.4, 0.8), (0.8, 1.2), (1.2, 1.8), (1.8, 2.0)]
    spans += [(2.08, 2.08)] * 5
    timing = Timing([a for a, _ in spans], [b for _, b in spans], audio_seconds=2.1)
    assert decode([tokens[k] for k in trim_repetition(tokens, [], timing, decode)]) == " To say a few words."


def _words_vocab():
    vocab = {1: " making", 2: " books", 3: " by", 4: " means", 5: " of", 6: " letter", 7: "press", 8: " By"}
    return lambda ids: "".join(vocab[i] for i in ids)


def test_an_echo_of_the_last_committed_words_is_cut_where_it_has_no_audio():
    from roomscribe.engine.events import Word
    from roomscribe.engine.quality import Timing, cut_echo

    decode = _words_vocab()
    said = [Word(" making", 4.0, 4.3), Word(" books", 4.3, 4.68), Word(" by", 4.68, 5.0)]
    # After a window cut at 5.0 s the decoder says "by" again in the window's first instant.
    squeezed = Timing([0.0, 0.05, 0.4], [0.05, 0.4, 0.6], audio_seconds=1.0)
    assert cut_echo([8, 4, 5], [], decode, squeezed, [0, 1, 2], said, offset=5.0) == [1, 2]
    # The speaker said "by" again, after the first: it stays.
    spoken = Timing([0.1, 0.4, 0.7], [0.4, 0.7, 0.9], audio_seconds=1.0)
    assert cut_echo([8, 4, 5], [], decode, spoken, [0, 1, 2], said, offset=5.0) == [0, 1, 2]
    # The copy follows the prefix's own "by" and takes its audio, leaving the prefix's squeezed.
    prefix = [1, 2, 3]
    took = Timing([0.0, 0.3, 0.68, 0.68, 1.0, 1.3], [0.3, 0.68, 0.68, 1.0, 1.3, 1.5], audio_seconds=2.0)
    assert cut_echo([8, 4, 5], prefix, decode, took, [0, 1, 2], said, offset=4.0) == [1, 2]
    # Not the last words said: nothing to cut.
    assert cut_echo([4, 5], [], decode, squeezed, [0, 1], said, offset=5.0) == [0, 1]


def test_an_echo_after_a_stray_word_is_cut_where_it_lies_on_the_audio_of_the_words_it_copies():
    from roomscribe.engine.events import Word
    from roomscribe.engine.quality import Timing, cut_echo

    vocab = {1: " say", 2: " a", 3: " few", 4: " words", 5: " and", 6: " more"}
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    said = [Word(" a", 4.0, 4.3), Word(" few", 4.3, 4.6), Word(" words", 4.6, 5.0)]
    prefix = [2, 3, 4]
    # What is left of a loop ("say"), then the prefix's words again on their own audio.
    again = Timing([0.0] * 3 + [0.0, 0.05, 0.3, 0.6, 1.0, 1.3], [0.0] * 3 + [0.05, 0.3, 0.6, 1.0, 1.3, 1.6], 2.0)
    assert cut_echo([1, 2, 3, 4, 5, 6], prefix, decode, again, list(range(6)), said, offset=4.0) == [4, 5]
    # The speaker said "say a few words" again, after the first time: it stays.
    spoken = Timing(
        [0.0, 0.3, 0.6] + [1.0, 1.2, 1.4, 1.7, 2.1, 2.4], [0.3, 0.6, 1.0] + [1.2, 1.4, 1.7, 2.1, 2.4, 2.7], 3.0
    )
    assert cut_echo([1, 2, 3, 4, 5, 6], prefix, decode, spoken, list(range(6)), said, offset=4.0) == list(range(6))


def test_a_last_word_aligned_in_an_instant_is_told_apart_from_one_said():
    from roomscribe.engine.quality import squeezed_last_word

    vocab = {1: " and", 2: " typ", 3: "ography", 4: "."}
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    # "typography." in 40 ms: its audio is after it (the word and its full stop are held back).
    assert squeezed_last_word([1, 2, 3, 4], [0.0, 0.32, 0.36, 0.36], [0.32, 0.36, 0.36, 0.36], decode) == 3
    assert squeezed_last_word([1, 2, 3, 4], [0.0, 0.32, 0.6, 1.2], [0.32, 0.6, 1.2, 1.3], decode) == 0
    assert squeezed_last_word([1, 2, 3], [0.0, 0.32, 0.6], [], decode) == 0  # no alignment: say nothing


def test_a_run_of_words_aligned_faster_than_anyone_speaks_is_dropped():
    from roomscribe.engine.quality import Timing, cut_squeezed_runs

    decode = _words_vocab()
    tokens = [1, 2, 3, 4, 5, 1, 2, 3]
    heard = [(0.0, 0.3), (0.3, 0.6), (0.6, 0.8), (0.8, 1.1), (1.1, 1.3)]
    squeezed = Timing([a for a, _ in heard] + [1.3] * 3, [b for _, b in heard] + [1.3] * 3, audio_seconds=2.0)
    assert cut_squeezed_runs(tokens, [], decode, squeezed, list(range(8))) == [0, 1, 2, 3, 4]
    spoken = heard + [(1.3, 1.6), (1.6, 1.9), (1.9, 2.0)]
    timing = Timing([a for a, _ in spoken], [b for _, b in spoken], audio_seconds=2.2)
    assert cut_squeezed_runs(tokens, [], decode, timing, list(range(8))) == list(range(8))


def test_two_copies_of_a_word_on_the_audio_of_one_are_one_word():
    from roomscribe.engine.quality import Timing, trim_repetition

    decode = _words_vocab()
    # "letterpress letterpress" in 0.6 s: no one says 22 letters that fast.
    one_word = Timing([0.0, 0.2, 0.4, 0.45], [0.2, 0.4, 0.45, 0.6], audio_seconds=1.2)
    assert trim_repetition([6, 7, 6, 7], [], one_word, decode) == [0, 1]
    # Said twice, taking the time twice takes.
    twice = Timing([0.0, 0.25, 0.6, 0.85], [0.25, 0.6, 0.85, 1.2], audio_seconds=1.3)
    assert trim_repetition([6, 7, 6, 7], [], twice, decode) == [0, 1, 2, 3]
