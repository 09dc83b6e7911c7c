//! [`Export`]: how a typed implementation is served, method by method.
//! The macro writes one `Export` per trait; what it names here is public
//! so that the expansion compiles in the user's crate.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::__private::{AppError, Argument, Defaulted, Reply};
use super::Interface;
use crate::error::{Place, RemoteError};
use crate::value::object::{
    converted, type_error_at, Answer, CallResult, LocalObject, Object, ObjectBuilder,
};
use crate::value::{from_value, Value};

/// Builds the object serving one implementation `T` of the [`Interface`]
/// `S`: each method converts its arguments ([`Args`]) and calls the
/// implementation.
pub struct Export<S: ?Sized, T> {
    /// The implementation as the trait object, found again when the
    /// object comes home ([`Obj::local`](super::Obj::local)).
    erased: Arc<S>,
    this: Arc<T>,
    builder: ObjectBuilder,
}

/// What a method returned, as the peer's answer; `callee` names the
/// method in a conversion error.
pub fn reply<T: Reply>(callee: &str, value: T) -> CallResult {
    converted(&Place::Result { method: Some(callee.to_owned()) }, value)
}

/// What a method returning `Result<T, E>` returned: `Err(e)` reaches the
/// peer as a remote error named after `E`, carrying `e` as data
/// ([`RemoteError::typed`]).
pub fn reply_result<T: Reply, E: AppError>(callee: &str, result: Result<T, E>) -> CallResult {
    match result {
        Ok(t) => reply(callee, t),
        Err(e) => Err(RemoteError::typed(&e)),
    }
}

/// How many arguments a method takes: `required` first, then defaulted
/// ones up to `total` (an argument added later with `#[netref(default)]`,
/// which older callers leave out).
#[derive(Clone, Copy, Debug)]
pub struct Arity {
    /// The arguments every call passes.
    pub required: usize,
    /// All the arguments, defaulted ones included.
    pub total: usize,
}

impl<S: Interface + ?Sized, T: Send + Sync + 'static> Export<S, T> {
    /// Starts the object serving `this` (which is `erased` as the trait
    /// object), named after the trait.
    pub fn new(this: Arc<T>, erased: Arc<S>) -> Self {
        Export { erased, this, builder: ObjectBuilder::new(S::NAME) }
    }

    /// A method answering at once: `f` takes the implementation and the
    /// call's arguments, and answers ([`reply`], [`reply_result`]).
    pub fn method<F>(self, name: &'static str, arity: Arity, f: F) -> Self
    where
        F: Fn(&T, &mut Args) -> CallResult + Send + Sync + 'static,
    {
        let this = self.this.clone();
        let callee: Arc<str> = format!("{}.{name}", S::NAME).into();
        self.with(name, move |values| {
            Answer::Ready(Args::new(callee.clone(), values, arity).and_then(|mut args| f(&this, &mut args)))
        })
    }

    /// An asynchronous method (`async fn`): `f` converts the arguments at
    /// once (a wrong one is refused before anything runs) and gives the
    /// future of the answer, which the connection polls and sends when it
    /// is ready.
    pub fn async_method<F, Fut>(self, name: &'static str, arity: Arity, f: F) -> Self
    where
        F: Fn(&Arc<T>, &mut Args) -> Result<Fut, RemoteError> + Send + Sync + 'static,
        Fut: Future<Output = CallResult> + Send + 'static,
    {
        let this = self.this.clone();
        let callee: Arc<str> = format!("{}.{name}", S::NAME).into();
        self.with(name, move |values| {
            match Args::new(callee.clone(), values, arity).and_then(|mut args| f(&this, &mut args)) {
                Ok(future) => Answer::Later(Box::pin(future)),
                Err(e) => Answer::Ready(Err(e)),
            }
        })
    }

    /// An asynchronous method whose future need not be `Send`
    /// (`#[netref(local)] async fn`): as [`async_method`](Self::async_method),
    /// but the future is polled only on the thread that started it, the
    /// one serving the connection when the call arrived.
    pub fn local_async_method<F, Fut>(self, name: &'static str, arity: Arity, f: F) -> Self
    where
        F: Fn(&Arc<T>, &mut Args) -> Result<Fut, RemoteError> + Send + Sync + 'static,
        Fut: Future<Output = CallResult> + 'static,
    {
        let this = self.this.clone();
        let callee: Arc<str> = format!("{}.{name}", S::NAME).into();
        self.with(name, move |values| {
            match Args::new(callee.clone(), values, arity).and_then(|mut args| f(&this, &mut args)) {
                Ok(future) => {
                    Answer::Later(crate::connection::loop_thread::thread_answer(callee.clone(), future))
                }
                Err(e) => Answer::Ready(Err(e)),
            }
        })
    }

    /// Names the parameters of the method `name`, in order (the macro
    /// writes them), for peers that pass arguments by name.
    pub fn parameters(mut self, name: &str, names: &[&str]) -> Self {
        self.builder = self.builder.parameters(name, names);
        self
    }

    fn with(mut self, name: &str, handler: impl Fn(Vec<Value>) -> Answer + Send + Sync + 'static) -> Self {
        self.builder = self.builder.handler(name, handler);
        self
    }

    /// Finishes the object. Handed back by the peer, it is found again as
    /// this implementation ([`Obj::local`](super::Obj::local)).
    pub fn build(self) -> LocalObject {
        LocalObject::new(Typed { this: self.erased, concrete: self.this, object: self.builder.build() })
    }
}

/// The arguments of one call of a typed method, converted in order.
pub struct Args {
    callee: Arc<str>,
    values: std::vec::IntoIter<Value>,
    position: usize,
}

impl Args {
    /// Checks the number of arguments against `arity`: a `TypeError` in
    /// Python's words otherwise.
    pub(super) fn new(callee: Arc<str>, values: Vec<Value>, arity: Arity) -> Result<Args, RemoteError> {
        let given = values.len();
        if given < arity.required || given > arity.total {
            let takes = match (arity.required, arity.total) {
                (1, 1) => "1 argument".to_string(),
                (r, t) if r == t => format!("{t} arguments"),
                (r, t) => format!("from {r} to {t} arguments"),
            };
            let given = match given {
                1 => "1 was given".to_string(),
                n => format!("{n} were given"),
            };
            return Err(RemoteError::type_error(format!("`{callee}` takes {takes} but {given}")));
        }
        Ok(Args { callee, values: values.into_iter(), position: 0 })
    }

    /// What is called, `Trait.method`, as errors name it.
    pub fn callee(&self) -> &Arc<str> {
        &self.callee
    }

    /// The next argument, which the caller must pass (the arity is checked).
    pub fn take<T: Argument>(&mut self) -> Result<T, RemoteError> {
        let value = self.values.next().unwrap_or(Value::Null);
        self.convert(value)
    }

    /// The next argument, or `T::default()` when the caller left it out.
    pub fn take_or_default<T: Argument + Defaulted>(&mut self) -> Result<T, RemoteError> {
        match self.values.next() {
            Some(value) => self.convert(value),
            None => {
                self.position += 1;
                Ok(T::default())
            }
        }
    }

    fn convert<T: DeserializeOwned>(&mut self, value: Value) -> Result<T, RemoteError> {
        self.position += 1;
        from_value(value).map_err(|e| {
            type_error_at(
                &Place::Argument { position: self.position, callee: Some(self.callee.to_string()) },
                e,
            )
        })
    }
}

/// The object serving an implementation: the built methods, and the
/// implementation itself, so that the object handed back is found as it.
pub(super) struct Typed<S: ?Sized> {
    pub(super) this: Arc<S>,
    /// The same implementation as its own type, for [`Obj::downcast`](super::Obj::downcast).
    pub(super) concrete: Arc<dyn std::any::Any + Send + Sync>,
    object: LocalObject,
}

impl<S: ?Sized + Send + Sync + 'static> Object for Typed<S> {
    fn type_name(&self) -> &str {
        self.object.type_name()
    }
    fn call_method(&self, name: &str, args: Vec<Value>) -> CallResult {
        self.object.object().call_method(name, args)
    }
    fn getattr(&self, name: &str) -> CallResult {
        self.object.object().getattr(name)
    }
    fn call(&self, args: Vec<Value>) -> CallResult {
        self.object.object().call(args)
    }
    fn dir(&self) -> Vec<String> {
        self.object.object().dir()
    }
    fn start_method(&self, name: &str, args: Vec<Value>) -> Answer {
        self.object.object().start_method(name, args)
    }
    fn start_call(&self, args: Vec<Value>) -> Answer {
        self.object.object().start_call(args)
    }
    fn parameters(&self, method: Option<&str>) -> Option<&[String]> {
        self.object.object().parameters(method)
    }
}
