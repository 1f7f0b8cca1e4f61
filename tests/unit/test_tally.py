"""simulators.tally: a run counted from the SMSC's side against the store."""

from __future__ import annotations

from simulators.tally import tally


def test_counts_duplicates_and_states() -> None:
    accepted = {"a": "1", "b": "2", "c": "3"}
    run = tally(accepted, ["1", "2", "2", "2", "9"], {"a": "DELIVERED", "b": "DELIVERED",
                                                       "c": "ACCEPTED"})
    assert (run.submitted, run.reached, run.duplicates, run.most_copies) == (4, 2, 2, 3)
    assert run.pending == 1 and not run.lost  # ACCEPTED is pending, not lost
    assert run.states_text() == "DELIVERED 2, ACCEPTED 1"


def test_lost_is_absent_or_claimed_sent_but_never_at_the_smsc() -> None:
    accepted = {"a": "1", "b": "2", "c": "3", "d": "4"}
    states = {"a": None, "b": "SUBMITTED", "c": "DELIVERED", "d": "UNKNOWN"}
    run = tally(accepted, ["3"], states)
    assert run.lost == ["a", "b"]
    assert run.unknown_unseen == 1  # the daemon's own verdict, reported: not lost
    assert run.states_text() == ("DELIVERED 1, SUBMITTED 1, UNKNOWN 1 (1 never at the SMSC), "
                                 "missing 1")
    assert run.to_dict()["lost"] == 2
