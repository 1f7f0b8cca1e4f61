"""Count a run from the SMSC's side against the store: what was accepted, what reached
the SMSC (and how often), what the store says of each message, and what was lost.

Pure: it takes the accepted messages (id -> destination), the destination of every
submit_sm the SMSC received, and each message's stored state. One message is one
submit_sm here (single-part messages with distinct destinations), so a destination
seen twice is a duplicate.

Lost means one of:

* the store does not hold an accepted message, or
* the store says the SMSC took it (SUBMITTED, or a state only a receipt gives:
  DELIVERED, UNDELIVERABLE, EXPIRED) while the SMSC never received its submit_sm.

Not lost: ``ACCEPTED`` (pending: still queued, or resent by the next start), and the
daemon's own verdicts (``FAILED``, ``REJECTED``, ``UNKNOWN``: reported with a reason);
an ``UNKNOWN`` the SMSC never saw is counted apart, as ``unknown_unseen``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PENDING = "ACCEPTED"
# States that say the SMSC answered the submit (or receipted it).
SMSC_STATES = frozenset({"SUBMITTED", "DELIVERED", "UNDELIVERABLE", "EXPIRED"})


@dataclass(slots=True)
class Tally:
    accepted: int
    submitted: int  # submit_sm PDUs the SMSC received for accepted messages
    reached: int  # accepted messages the SMSC received at least once
    duplicates: int  # submitted - reached
    states: Counter[str] = field(default_factory=Counter)  # "missing" when not stored
    lost: list[str] = field(default_factory=list)  # message ids
    unknown_unseen: int = 0  # UNKNOWN and never at the SMSC
    most_copies: int = 0  # the most submit_sm one message got

    @property
    def pending(self) -> int:
        return self.states.get(PENDING, 0)

    def states_text(self) -> str:
        """``DELIVERED 290, UNKNOWN 10 (4 never at the SMSC)``."""
        parts = []
        for state, count in sorted(self.states.items(), key=lambda item: (-item[1], item[0])):
            text = f"{state} {count}"
            if state == "UNKNOWN" and self.unknown_unseen:
                text += f" ({self.unknown_unseen} never at the SMSC)"
            parts.append(text)
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"accepted": self.accepted, "submitted": self.submitted, "reached": self.reached,
                "duplicates": self.duplicates, "lost": len(self.lost),
                "states": dict(self.states), "unknown_unseen": self.unknown_unseen,
                "most_copies": self.most_copies}


def tally(accepted: Mapping[str, str], submitted: Iterable[str],
          states: Mapping[str, str | None]) -> Tally:
    """``accepted``: message id -> destination; ``submitted``: the destination of each
    submit_sm the SMSC received; ``states``: message id -> stored state (None: absent)."""
    wanted = set(accepted.values())
    copies = Counter(d for d in submitted if d in wanted)
    result = Tally(accepted=len(accepted), submitted=sum(copies.values()), reached=len(copies),
                   duplicates=sum(copies.values()) - len(copies),
                   most_copies=max(copies.values(), default=0))
    for message_id, destination in accepted.items():
        state = states.get(message_id)
        result.states[state or "missing"] += 1
        seen = copies[destination] > 0
        if state is None or (state in SMSC_STATES and not seen):
            result.lost.append(message_id)
        elif state == "UNKNOWN" and not seen:
            result.unknown_unseen += 1
    return result
