//! One decoded message handled: a reply or error completes a request of ours, a
//! request of the peer's becomes an event.

use super::{Event, Phase, Protocol, Request};
use crate::error::{CloseReason, Error, ProtocolError, RemoteError, Result};
use crate::value::Value;
use crate::wire;
use crate::wire::{Message, WireRequest};

pub(super) fn bad_args(e: Error) -> RemoteError {
    match e {
        Error::Protocol(ProtocolError::UnknownObject(id)) => RemoteError::new(
            "ReferenceError",
            format!("argument refers to object id {id}, which was never handed to this peer or was released"),
        ),
        other => RemoteError::type_error(format!("invalid arguments: {other}")),
    }
}

pub(super) fn describe(msg: &Message) -> &'static str {
    match msg {
        Message::Hello { .. } => "a hello",
        Message::Request { .. } => "a request",
        Message::Reply { .. } => "a reply",
        Message::Error { .. } => "an error",
    }
}

impl Protocol {
    pub(super) fn handle_message(&mut self, msg: Message) -> Result<()> {
        if self.phase == Phase::ExpectHello {
            return match msg {
                Message::Hello { version, features } => {
                    if version != wire::VERSION {
                        return Err(ProtocolError::Handshake(format!(
                            "peer speaks netref protocol version {version}, this side speaks {}",
                            wire::VERSION
                        ))
                        .into());
                    }
                    let _shared_features = features & wire::FEATURES;
                    self.phase = Phase::Open;
                    Ok(())
                }
                other => Err(ProtocolError::Handshake(format!(
                    "expected the peer's hello first, got {}",
                    describe(&other)
                ))
                .into()),
            };
        }
        match msg {
            Message::Hello { .. } => Err(ProtocolError::Unexpected("a second hello".into()).into()),
            Message::Request { seq, request } => self.handle_request(seq, request),
            Message::Reply { seq, value } => {
                let result = self.decode_value(value).map_err(|e| {
                    RemoteError::new("InvalidReply", format!("the peer's reply could not be decoded: {e}"))
                });
                self.handle_answer(seq, result)
            }
            Message::Error { seq, error } => self.handle_answer(seq, Err(error)),
        }
    }

    pub(super) fn handle_answer(&mut self, seq: u64, result: Result<Value, RemoteError>) -> Result<()> {
        if let Some(deadline) = self.pending.remove(&seq) {
            // The pending table knows the request's deadline: its entry
            // leaves the index without a search (see `deadline_queue`). (A
            // scan of the index per reply made 20,000 expiring calls in
            // flight ten times slower than plain ones.)
            if let Some(t) = deadline {
                let pending = &self.pending;
                let _visits = self.deadlines.remove(t, seq, |t, s| pending.get(&s) == Some(&Some(t)));
                #[cfg(test)]
                {
                    self.deadline_visits += _visits;
                }
            }
            self.events.push_back(Event::Reply { seq, result });
            Ok(())
        } else if self.expired.remove(&seq) {
            // Too late: the caller gave up. Any proxies in `result` drop here
            // and are released.
            Ok(())
        } else {
            Err(ProtocolError::UnknownSequence(seq).into())
        }
    }

    pub(super) fn handle_request(&mut self, seq: u64, request: WireRequest) -> Result<()> {
        let resolved = match request {
            WireRequest::Root => Ok(Request::Root),
            WireRequest::Ping(payload) => self
                .decode_value(payload)
                .map(Request::Ping)
                .map_err(|e| RemoteError::value_error(e.to_string())),
            WireRequest::Release(items) => {
                for (id, count) in items {
                    self.release(id, count)?;
                }
                return Ok(());
            }
            WireRequest::Cancel(cancelled) => {
                self.events.push_back(Event::Cancelled { seq: cancelled });
                return Ok(());
            }
            WireRequest::Close(reason) => {
                log::debug!("netref connection {}: peer closes ({reason})", self.id);
                self.fail(CloseReason::ByPeer);
                return Ok(());
            }
            WireRequest::Call { target, args } => self.local_target(target).and_then(|target| {
                Ok(Request::Call { target, args: self.decode_args(args).map_err(bad_args)? })
            }),
            WireRequest::CallMethod { target, name, args } => self.local_target(target).and_then(|target| {
                Ok(Request::CallMethod { target, name, args: self.decode_args(args).map_err(bad_args)? })
            }),
            WireRequest::GetAttr { target, name } => {
                self.local_target(target).map(|target| Request::GetAttr { target, name })
            }
            WireRequest::Dir { target } => self.local_target(target).map(|target| Request::Dir { target }),
        };
        let request = resolved.unwrap_or_else(Request::Invalid);
        self.events.push_back(Event::Request { seq, request });
        Ok(())
    }
}
