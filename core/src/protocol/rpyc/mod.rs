//! RPyC 6's dialect (`RPYC-WIRE.md`), as a second codec under the same
//! protocol: RPyC's frames are cut and decoded here, each message becomes
//! the [`Message`] netref's own dialect would have carried (the same
//! requests, replies, object tables and events), and each message this side
//! sends is written as RPyC's. What RPyC asks that netref's dialect has no
//! request for (an object's `repr`, hash, equality, its class's methods,
//! releases, which it acknowledges) is answered here, from the export table.
//!
//! Object references: the peer's objects are known by their id packs,
//! mapped to the ids of the import table; ours go out as
//! `("netref.<type>", 1, <export id>)`, or as `builtins.function` for an
//! object that exposes no names (a callback, a bound method), which Python
//! knows without asking.

use std::collections::{HashMap, HashSet};

use super::{Phase, Protocol};
use crate::error::{CloseReason, DecodeError, Error, ProtocolError, RemoteError, Result};
use crate::wire::rpyc::{self, IdPack, Packet};
use crate::wire::Message;

// In the order bytes travel: in, the peer's requests, values both ways, out.
mod output; // our messages written as RPyC's
mod requests; // the peer's requests mapped onto ours, or answered here
mod values; // boxed values and id packs to and from netref's tagged items

/// What this side knows of an RPyC connection beyond the common tables.
#[derive(Debug, Default)]
pub(super) struct RpycTables {
    /// The peer's objects, under the ids the import table knows them by.
    import_ids: HashMap<IdPack, u64>,
    packs: HashMap<u64, IdPack>,
    next_import: u64,
    /// Our requests whose answers nobody waits for (releases, the close):
    /// their replies are dropped.
    unanswered: HashSet<u64>,
    /// Whether the peer has sent anything yet: an RPyC 5 server closes
    /// without a word on RPyC 6's first request.
    heard: bool,
}

/// How a netref request names the peer's request `seq` of RPyC's: one
/// more, so that none is 0, which netref's dialect keeps for one-way
/// requests.
fn our_seq(theirs: u64) -> Result<u64> {
    theirs
        .checked_add(1)
        .ok_or_else(|| DecodeError::Malformed(format!("sequence number {theirs} is out of range")).into())
}

impl Protocol {
    /// Cuts the RPyC frames in `bytes` and handles each message.
    pub(super) fn cut_rpyc_frames(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.decoder.push(bytes) {
            return self.refuse(e);
        }
        let max = self.config.max_frame_len;
        let max_items = self.config.max_frame_items;
        while self.phase != Phase::Closed {
            let packet = match self.decoder.next_frame(max) {
                Ok(None) => break,
                Ok(Some(body)) => {
                    rpyc::open_frame(body, max).and_then(|payload| Packet::decode(&payload, max_items))
                }
                Err(e) => Err(e),
            };
            self.frame_started = None;
            if let Err(e) = packet.and_then(|p| self.handle_packet(p)) {
                return self.refuse(e);
            }
        }
        Ok(())
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<()> {
        self.rpyc().heard = true;
        match packet {
            Packet::Reply { seq, value } => {
                if self.rpyc().unanswered.remove(&seq) {
                    return Ok(());
                }
                match self.unbox(value) {
                    Ok(value) => self.handle_message(Message::Reply { seq, value }),
                    Err(e) => self.handle_answer(
                        seq,
                        Err(RemoteError::new(
                            "InvalidReply",
                            format!("the peer's reply could not be read: {e}"),
                        )),
                    ),
                }
            }
            Packet::Exception { seq, exception } => {
                if self.rpyc().unanswered.remove(&seq) {
                    return Ok(());
                }
                self.handle_answer(seq, Err(exception.into_remote_error()))
            }
            Packet::Request { seq, handler, args } => self.handle_rpyc_request(seq, handler, args),
        }
    }

    /// Why the connection ended when the peer closed its end: a peer that
    /// closes without answering anything while requests wait is most
    /// likely an RPyC 5 server, which does that on RPyC 6's messages.
    pub(super) fn rpyc_eof_reason(&self) -> Option<CloseReason> {
        let tables = self.rpyc.as_ref()?;
        (!tables.heard && !self.pending.is_empty()).then(|| {
            CloseReason::Protocol(ProtocolError::Handshake(
                "the RPyC peer closed the connection without answering anything: a server speaking \
                 RPyC < 6 does that on RPyC 6's messages (netref speaks RPyC 6.0's)"
                    .into(),
            ))
        })
    }

    pub(super) fn rpyc(&mut self) -> &mut RpycTables {
        self.rpyc.get_or_insert_with(Box::default)
    }
}

impl Protocol {
    /// Ends the connection for `e` (named in the peer's terms before its
    /// greeting); returns the error that ended it.
    pub(super) fn refuse(&mut self, e: Error) -> Result<()> {
        let reason = CloseReason::from_fault(self.explain_bad_greeting(e));
        self.fail(reason.clone());
        Err(Error::Closed(reason))
    }
}
