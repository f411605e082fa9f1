"""SWIM-style membership and record gossip (modelled on hashicorp/memberlist).

A sans-IO protocol core (`Memberlist`) driven either by real ZeroMQ sockets
(`ZmqTransport`, `GossipAgent`) or by a deterministic simulated network
(`SimNetwork`). See `memberlist.py` for the protocol.
"""

from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind, MemberEvent, MemberInfo, Memberlist, Outbound
from daemons.gossip.messages import GossipDecodeError, Message, MsgType, Status, decode, encode
from daemons.gossip.records import NodeRecord

__all__ = [
    "EventKind",
    "GossipConfig",
    "GossipDecodeError",
    "MemberEvent",
    "MemberInfo",
    "Memberlist",
    "Message",
    "MsgType",
    "NodeRecord",
    "Outbound",
    "Status",
    "decode",
    "encode",
]
