//! Output: each message this side sends, written as RPyC's.

use super::super::Protocol;
use crate::error::Result;
use crate::wire::rpyc::{self, handler, Boxed, Brine, Packet, Vinegar};
use crate::wire::{Message, WireRequest};

impl Protocol {
    /// Queues `msg` as RPyC's messages say it.
    pub(in crate::protocol) fn send_rpyc(&mut self, msg: Message) -> Result<()> {
        let empty = || Boxed::Value(Brine::Tuple(Vec::new()));
        let packet = match msg {
            // RPyC has no greeting.
            Message::Hello { .. } => return Ok(()),
            Message::Reply { seq, value } => Packet::Reply { seq: seq - 1, value: self.boxed(value)? },
            Message::Error { seq, error } => {
                Packet::Exception { seq: seq - 1, exception: Vinegar::from_remote_error(&error) }
            }
            Message::Request { seq, request } => {
                let (handler, args) = match request {
                    WireRequest::Root => (handler::GETROOT, empty()),
                    WireRequest::Call { target, args } => {
                        let parts =
                            vec![Boxed::ReceiverObject(self.their_pack(target)?), self.boxed(args)?, empty()];
                        (handler::CALL, Boxed::tuple(parts))
                    }
                    WireRequest::CallMethod { target, name, args } => {
                        let object = Boxed::ReceiverObject(self.their_pack(target)?);
                        let parts = vec![object, Boxed::Value(Brine::Str(name)), self.boxed(args)?, empty()];
                        (handler::CALLATTR, Boxed::tuple(parts))
                    }
                    WireRequest::GetAttr { target, name } => {
                        let object = Boxed::ReceiverObject(self.their_pack(target)?);
                        (handler::GETATTR, Boxed::tuple(vec![object, Boxed::Value(Brine::Str(name))]))
                    }
                    WireRequest::Dir { target } => {
                        (handler::DIR, Boxed::tuple(vec![Boxed::ReceiverObject(self.their_pack(target)?)]))
                    }
                    WireRequest::Ping(payload) => (handler::PING, Boxed::tuple(vec![self.boxed(payload)?])),
                    WireRequest::Release(items) => {
                        // One DEL per object (RPyC has no batch), each a
                        // request whose acknowledgement is dropped.
                        for (id, count) in items {
                            let tables = self.rpyc();
                            let Some(pack) = tables.packs.remove(&id) else { continue };
                            tables.import_ids.remove(&pack);
                            let args = Boxed::tuple(vec![
                                Boxed::ReceiverObject(pack),
                                Boxed::Value(Brine::Int(count.into())),
                            ]);
                            self.send_unanswered(handler::DEL, args)?;
                        }
                        return Ok(());
                    }
                    // RPyC cannot take a request back: the late reply is dropped here.
                    WireRequest::Cancel(_) => return Ok(()),
                    WireRequest::Close(_) => return self.send_unanswered(handler::CLOSE, empty()),
                };
                Packet::Request { seq, handler, args }
            }
        };
        self.push_packet(packet)
    }

    /// Sends a request of its own sequence number whose answer is dropped.
    fn send_unanswered(&mut self, handler: u64, args: Boxed) -> Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.rpyc().unanswered.insert(seq);
        self.push_packet(Packet::Request { seq, handler, args })
    }

    pub(super) fn push_packet(&mut self, packet: Packet) -> Result<()> {
        let mut payload = Vec::new();
        packet.encode(&mut payload);
        let mut frame = Vec::new();
        rpyc::write_frame(&payload, &mut frame, self.config.max_frame_len)?;
        self.out.push_bytes(&frame);
        Ok(())
    }
}
