"""The SMPP header layout and command ids the simulator's raw byte paths (the load
generator, the MNO's lazy submit_sm path, receipts) read and write without decoding.

The ids are plain ints, not ``CommandId`` members, so that a hot loop compares ints.
"""

from __future__ import annotations

import struct

from smppd.protocol.constants import CommandId

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence
U32 = struct.Struct(">I")
TLV_HEAD = struct.Struct(">HH")  # tag, length

SUBMIT_SM = int(CommandId.SUBMIT_SM)
SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)
DELIVER_SM = int(CommandId.DELIVER_SM)
DELIVER_SM_RESP = int(CommandId.DELIVER_SM_RESP)
BIND_TRANSCEIVER_RESP = int(CommandId.BIND_TRANSCEIVER_RESP)
ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
ENQUIRE_LINK_RESP = int(CommandId.ENQUIRE_LINK_RESP)
UNBIND = int(CommandId.UNBIND)
