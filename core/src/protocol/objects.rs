//! The object tables: local objects exported to the peer (counted references)
//! and the peer's objects imported as proxies, and how values carry them.

use std::sync::{Arc, Weak};

use super::{Phase, Protocol};
use crate::error::{CloseReason, DecodeError, Error, LimitError, Misuse, ProtocolError, RemoteError, Result};
use crate::value::object::LocalObject;
use crate::value::remote::{ProxyInner, RemoteObject};
use crate::value::{ObjectRef, Value};
use crate::wire::{Cbor, Message, WireRequest, TAG_RECEIVER_OBJECT, TAG_SENDER_OBJECT};

pub(super) struct Export {
    /// What the peer's requests on this id run on: the object itself, or
    /// for a relayed proxy the relay that forwards to it.
    pub(super) object: LocalObject,
    /// References handed to the peer and not yet released.
    pub(super) sent: u64,
    /// For a relay, the proxy of another connection it forwards to: the
    /// peer handing this id back gets that proxy, not the relay. Weak
    /// because the relay object holds the proxy; dropping this never
    /// releases anything, so a release may happen under the driver's lock.
    pub(super) relayed: Option<Weak<ProxyInner>>,
}

impl Export {
    /// The key of `export_ids`: the object's address, or the relayed
    /// proxy's, so one proxy passed twice gets one relay and one id.
    pub(super) fn key(&self) -> usize {
        match &self.relayed {
            Some(proxy) => proxy.as_ptr() as usize,
            None => self.object.addr(),
        }
    }
}

pub(super) struct Import {
    /// References received and not yet released.
    pub(super) received: u64,
    pub(super) proxy: Weak<ProxyInner>,
}

impl Protocol {
    /// Sends a message whose encoding exported `exported` objects: their
    /// counts rise only if the message is actually queued.
    pub(super) fn send_exporting(&mut self, msg: Message, exported: Vec<u64>) -> Result<()> {
        match self.send(msg) {
            Ok(()) => {
                for id in exported {
                    if let Some(e) = self.exports.get_mut(&id) {
                        e.sent += 1;
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.rollback_exports(&exported);
                Err(e)
            }
        }
    }

    pub(super) fn rollback_exports(&mut self, exported: &[u64]) {
        for id in exported {
            if self.exports.get(id).is_some_and(|e| e.sent == 0) {
                let e = self.exports.remove(id).expect("checked");
                self.export_ids.remove(&e.key());
                self.released.push(e.object);
            }
        }
    }

    pub(super) fn encode_args(&mut self, args: Vec<Value>, exported: &mut Vec<u64>) -> Result<Cbor> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            match self.encode_value(a, exported) {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.rollback_exports(exported);
                    return Err(e);
                }
            }
        }
        Ok(Cbor::Array(out))
    }

    pub(super) fn encode_value(&mut self, value: Value, exported: &mut Vec<u64>) -> Result<Cbor> {
        let max_depth = self.config.max_depth;
        let result = value.into_cbor(max_depth, &mut |o| match o {
            ObjectRef::Local(l) => {
                let id = self.export(l)?;
                exported.push(id);
                Ok(Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(id.into()))))
            }
            ObjectRef::Remote(r) if r.inner.protocol_id == self.id => {
                Ok(Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(Cbor::Integer(r.id().into()))))
            }
            ObjectRef::Remote(r) => {
                let id = self.export_relay(r)?;
                exported.push(id);
                Ok(Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(id.into()))))
            }
        });
        if result.is_err() {
            self.rollback_exports(exported);
        }
        result
    }

    /// The id under which `object` is exported, adding it (with no references
    /// yet) if it is new. The same object always gets the same id while the
    /// peer holds it.
    pub(super) fn export(&mut self, object: &LocalObject) -> Result<u64> {
        match self.export_ids.get(&object.addr()) {
            Some(&id) => Ok(id),
            None => self.add_export(Export { object: object.clone(), sent: 0, relayed: None }),
        }
    }

    /// The id under which the proxy `proxy` of another connection is
    /// exported, as a relay that forwards the peer's requests to it, adding
    /// it if it is new (RPyC's rule: a proxy passed to a third party is an
    /// object of the middle process). The same proxy always gets the same
    /// id while the peer holds it, and the peer handing the id back gets
    /// `proxy` itself (see [`decode_value`](Self::decode_value)). The relay
    /// object is made by the proxy's connection; a proxy of a protocol
    /// driven directly has none and cannot be passed on.
    pub(super) fn export_relay(&mut self, proxy: &RemoteObject) -> Result<u64> {
        match self.export_ids.get(&(Arc::as_ptr(&proxy.inner) as usize)) {
            Some(&id) => Ok(id),
            None => {
                let Some(owner) = &proxy.inner.owner else {
                    return Err(Misuse::ForeignObject { id: proxy.id() }.into());
                };
                let relayed = Some(Arc::downgrade(&proxy.inner));
                self.add_export(Export { object: owner.relay(proxy), sent: 0, relayed })
            }
        }
    }

    /// Adds `export` under a new id, within the limit on exports.
    fn add_export(&mut self, export: Export) -> Result<u64> {
        if self.exports.len() >= self.config.max_exported {
            return Err(LimitError::TooManyExported { max: self.config.max_exported }.into());
        }
        let id = self.next_export;
        self.next_export += 1;
        self.export_ids.insert(export.key(), id);
        self.exports.insert(id, export);
        Ok(id)
    }

    /// Turns the peer's released proxies into one batched release message.
    /// A proxy re-imported after its drop was queued is alive again and is
    /// skipped; its count keeps growing until it, too, is dropped.
    pub(super) fn flush_releases(&mut self) {
        let dropped = self.releases.take();
        if dropped.is_empty() || self.phase == Phase::Closed {
            return;
        }
        let mut batch = Vec::new();
        for id in dropped {
            if let Some(import) = self.imports.get(&id) {
                if import.proxy.strong_count() == 0 {
                    batch.push((id, import.received));
                    self.imports.remove(&id);
                }
            }
        }
        if !batch.is_empty() {
            let msg = Message::Request { seq: 0, request: WireRequest::Release(batch) };
            if let Err(e) = self.send(msg) {
                self.fail(CloseReason::from_fault(e));
            }
        }
    }

    pub(super) fn decode_value(&mut self, cbor: Cbor) -> Result<Value> {
        let max = self.config.max_depth;
        Value::from_cbor(cbor, max, &mut |tag, inner| {
            if tag != TAG_SENDER_OBJECT && tag != TAG_RECEIVER_OBJECT {
                return Err(DecodeError::UnknownTag(tag).into());
            }
            let id = inner.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| {
                Error::Decode(DecodeError::Malformed(format!("tag {tag} must wrap an object id")))
            })?;
            match tag {
                TAG_SENDER_OBJECT => self.import(id).map(|r| Value::Object(ObjectRef::Remote(r))),
                _ => match self.exports.get(&id) {
                    // A relay handed back is the proxy it relays: home, an
                    // object is itself again, not a relay of a relay.
                    // (The upgrade cannot fail: the export's relay object
                    // holds the proxy.)
                    Some(Export { relayed: Some(proxy), .. }) => proxy
                        .upgrade()
                        .map(|inner| Value::Object(ObjectRef::Remote(RemoteObject { inner })))
                        .ok_or_else(|| ProtocolError::UnknownObject(id).into()),
                    Some(e) => Ok(Value::Object(ObjectRef::Local(e.object.clone()))),
                    None => Err(ProtocolError::UnknownObject(id).into()),
                },
            }
        })
    }

    /// Each argument may nest `max_depth` levels, as when it was encoded
    /// (the array around the arguments does not count).
    pub(super) fn decode_args(&mut self, args: Cbor) -> Result<Vec<Value>> {
        match args {
            Cbor::Array(items) => items.into_iter().map(|a| self.decode_value(a)).collect(),
            _ => Err(DecodeError::Malformed("arguments must be an array".into()).into()),
        }
    }

    /// Records one more reference to the peer's object `id`; the same id maps
    /// to the same proxy while any clone of it lives.
    pub(super) fn import(&mut self, id: u64) -> Result<RemoteObject> {
        if let Some(import) = self.imports.get_mut(&id) {
            import.received += 1;
            if let Some(inner) = import.proxy.upgrade() {
                return Ok(RemoteObject { inner });
            }
            let proxy = self.new_proxy(id);
            self.imports.get_mut(&id).expect("present").proxy = Arc::downgrade(&proxy.inner);
            return Ok(proxy);
        }
        if self.imports.len() >= self.config.max_imported {
            return Err(LimitError::TooManyImported { max: self.config.max_imported }.into());
        }
        let proxy = self.new_proxy(id);
        self.imports.insert(id, Import { received: 1, proxy: Arc::downgrade(&proxy.inner) });
        Ok(proxy)
    }

    pub(super) fn new_proxy(&self, id: u64) -> RemoteObject {
        RemoteObject {
            inner: Arc::new(ProxyInner::new(
                id,
                self.id,
                self.owner.as_ref().and_then(Weak::upgrade),
                Arc::downgrade(&self.releases),
            )),
        }
    }

    pub(super) fn local_target(&self, id: u64) -> std::result::Result<LocalObject, RemoteError> {
        self.exports.get(&id).map(|e| e.object.clone()).ok_or_else(|| {
            RemoteError::new(
                "ReferenceError",
                format!(
                    "no object with id {id} was handed to this peer (never exported, or already released)"
                ),
            )
        })
    }

    pub(super) fn release(&mut self, id: u64, count: u64) -> Result<()> {
        let Some(export) = self.exports.get_mut(&id) else {
            return Err(ProtocolError::UnknownObject(id).into());
        };
        if count > export.sent || count == 0 {
            return Err(ProtocolError::OverRelease { id, released: count, held: export.sent }.into());
        }
        export.sent -= count;
        if export.sent == 0 {
            let e = self.exports.remove(&id).expect("present");
            self.export_ids.remove(&e.key());
            self.released.push(e.object);
        }
        Ok(())
    }
}
