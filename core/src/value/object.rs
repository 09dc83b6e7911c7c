//! Local objects: what this side exposes to the peer.
//!
//! Only what an object explicitly exposes is reachable; there is no
//! reflection. Most objects are built with [`ObjectBuilder`] from typed
//! closures whose arguments and results are serde types (or object
//! references); anything more dynamic implements [`Object`] directly.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Place, RemoteError};
use crate::value::{from_value, into_value, placed, to_value, Value};

/// Result of serving one request on a local object.
pub type CallResult = Result<Value, RemoteError>;

/// The answer of an asynchronous method, still to come: a future that the
/// thread or event loop serving the connection polls, replying to the peer
/// when it is ready. `Send`, because whichever thread serves the
/// connection next may poll it.
pub type PendingAnswer = Pin<Box<dyn Future<Output = CallResult> + Send + 'static>>;

/// What starting a call on a local object gives: the result now, or (an
/// asynchronous method) a future of it.
pub enum Answer {
    /// The call ran to its end.
    Ready(CallResult),
    /// The call goes on; the connection polls the future and replies when
    /// it is ready, serving its other requests (and, on an event loop, the
    /// loop's other sources) meanwhile.
    Later(PendingAnswer),
}

impl Answer {
    /// The result, for a caller that cannot wait for a future: an
    /// asynchronous method's answer is a `TypeError` naming `what()` (only
    /// formatted then), which
    /// only a connection serving the call can run.
    pub fn into_ready(self, what: impl FnOnce() -> String) -> CallResult {
        match self {
            Answer::Ready(result) => result,
            Answer::Later(_) => Err(RemoteError::type_error(format!(
                "`{}` is asynchronous: only a connection serving the call can run it",
                what()
            ))),
        }
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Answer::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// Something this side exposes to the peer.
///
/// Every method has a default that refuses with RPyC's errors, so an object
/// implements only what it exposes.
pub trait Object: std::any::Any + Send + Sync {
    /// A name for error messages and `repr`-like output.
    fn type_name(&self) -> &str;

    /// Calls the exposed method `name`. The default refuses with an attribute error.
    fn call_method(&self, name: &str, args: Vec<Value>) -> CallResult {
        let _ = args;
        Err(RemoteError::attribute(self.type_name(), name))
    }

    /// Reads the exposed attribute `name`. The default refuses with an attribute error.
    fn getattr(&self, name: &str) -> CallResult {
        Err(RemoteError::attribute(self.type_name(), name))
    }

    /// Calls the object itself. The default refuses with a type error.
    fn call(&self, args: Vec<Value>) -> CallResult {
        let _ = args;
        Err(RemoteError::type_error(format!("'{}' object is not callable", self.type_name())))
    }

    /// The exposed names (RPyC's `dir()`).
    fn dir(&self) -> Vec<String> {
        Vec::new()
    }

    /// The exposed names, or the error that keeps the object from listing
    /// them; this is what the peer's `dir()` request runs. The default is
    /// [`dir`](Self::dir); an object that forwards elsewhere (a relay of
    /// another connection's proxy) overrides it so a failure reaches the
    /// peer as an error instead of an empty list.
    fn try_dir(&self) -> Result<Vec<String>, RemoteError> {
        Ok(self.dir())
    }

    /// Starts the exposed method `name`, which may answer later (an
    /// asynchronous method): this is what the peer's method calls run. The
    /// default runs [`call_method`](Self::call_method) and answers at once.
    fn start_method(&self, name: &str, args: Vec<Value>) -> Answer {
        Answer::Ready(self.call_method(name, args))
    }

    /// Starts a call of the object itself, which may answer later: this is
    /// what the peer's calls run. The default runs [`call`](Self::call) and
    /// answers at once.
    fn start_call(&self, args: Vec<Value>) -> Answer {
        Answer::Ready(self.call(args))
    }

    /// The names of the parameters of the exposed method `method` (of the
    /// object itself when `None`), in order, when they are known: what
    /// lets a peer that passes arguments by name (Python's keyword
    /// arguments, in RPyC's dialect) be understood. The default knows none.
    fn parameters(&self, method: Option<&str>) -> Option<&[String]> {
        let _ = method;
        None
    }
}

/// A shared handle to a local object. Cloning is cheap; two clones are the
/// same object ([`same_as`](Self::same_as)). Passing one to the peer hands it
/// a proxy; a proxy handed back arrives as the same `LocalObject`.
#[derive(Clone)]
pub struct LocalObject(pub(crate) Arc<dyn Object>);

impl LocalObject {
    /// Wraps an object.
    pub fn new(object: impl Object) -> Self {
        LocalObject(Arc::new(object))
    }

    /// Wraps an already shared object.
    pub fn from_arc(object: Arc<dyn Object>) -> Self {
        LocalObject(object)
    }

    /// The object's type name.
    pub fn type_name(&self) -> &str {
        self.0.type_name()
    }

    /// True when both handles refer to the same object.
    pub fn same_as(&self, other: &LocalObject) -> bool {
        self.addr() == other.addr()
    }

    /// Identity of the object (its address), stable while any handle lives.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// The object itself.
    pub fn object(&self) -> &dyn Object {
        &*self.0
    }
}

impl fmt::Debug for LocalObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalObject({} @ {:#x})", self.type_name(), self.addr())
    }
}

type Handler = Arc<dyn Fn(Vec<Value>) -> Answer + Send + Sync>;

enum Attr {
    Fixed(Value),
    Getter(Arc<dyn Fn() -> CallResult + Send + Sync>),
}

/// Builds an object from typed closures.
///
/// ```
/// use netref::ObjectBuilder;
///
/// let calc = ObjectBuilder::new("Calculator")
///     .method("add", |a: i64, b: i64| a + b)
///     .try_method("parse", |s: String| s.parse::<i64>())
///     .attr("version", "1.0")
///     .build();
/// # let _ = calc;
/// ```
pub struct ObjectBuilder {
    type_name: String,
    methods: HashMap<String, Handler>,
    params: HashMap<String, Vec<String>>,
    attrs: HashMap<String, Attr>,
    call: Option<Handler>,
}

impl ObjectBuilder {
    /// Starts an object whose errors and listings call it `type_name`.
    pub fn new(type_name: impl Into<String>) -> Self {
        ObjectBuilder {
            type_name: type_name.into(),
            methods: HashMap::new(),
            params: HashMap::new(),
            attrs: HashMap::new(),
            call: None,
        }
    }

    /// Names the parameters of the method `method`, in order, so that a
    /// peer passing arguments by name (Python's keyword arguments, over
    /// RPyC's dialect) is understood: `c.root.greet(name="py")`. Typed
    /// services name theirs themselves.
    ///
    /// ```
    /// let obj = netref::ObjectBuilder::new("Greeter")
    ///     .method("greet", |name: String, punctuation: String| format!("hello {name}{punctuation}"))
    ///     .parameters("greet", &["name", "punctuation"])
    ///     .build();
    /// assert_eq!(obj.object().parameters(Some("greet")).unwrap(), ["name", "punctuation"]);
    /// ```
    pub fn parameters(mut self, method: &str, names: &[&str]) -> Self {
        self.params.insert(method.to_owned(), names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// Exposes a method that cannot fail. Arguments and the result are any
    /// serde types, [`RemoteObject`](crate::RemoteObject)s (callbacks),
    /// [`LocalObject`]s or [`Value`]s.
    pub fn method<Args, F: Method<Args>>(mut self, name: &str, f: F) -> Self
    where
        F::Output: Serialize,
    {
        let callee = self.callee(name);
        self.methods.insert(name.to_owned(), plain(callee, f));
        self
    }

    /// Exposes a method returning `Result<T, E>`; an `Err` reaches the peer as
    /// a remote error named after `E` (a [`netref::Error`](crate::Error) from a
    /// nested call keeps its original remote type and traceback).
    pub fn try_method<Args, F, T, E>(mut self, name: &str, f: F) -> Self
    where
        F: Method<Args, Output = Result<T, E>>,
        T: Serialize,
        E: fmt::Display + 'static,
    {
        let callee = self.callee(name);
        self.methods.insert(name.to_owned(), fallible(callee, f));
        self
    }

    /// Exposes an asynchronous method: the closure returns a future of a
    /// `Result<T, E>` (an `Err` reaches the peer as for
    /// [`try_method`](Self::try_method)). The connection polls the future
    /// and replies when it is ready, serving its other requests meanwhile;
    /// on an event-loop server, the loop serves its other connections.
    ///
    /// This is how a method waits on its peer (a callback's reply, a
    /// nested call) without stopping the thread that serves it: await the
    /// call's [`AsyncResult`](crate::AsyncResult). On an event-loop server
    /// a synchronous call from a method fails at once with
    /// [`Misuse::BlocksLoopServer`](crate::Misuse::BlocksLoopServer).
    ///
    /// ```
    /// use netref::{ObjectBuilder, RemoteObject};
    ///
    /// let relay = ObjectBuilder::new("Relay")
    ///     // Asks the caller's callback, and answers with what it said.
    ///     .async_method("ask", |question: String, answer: RemoteObject| async move {
    ///         let reply: String = netref::async_(&answer).call((question,)).typed().await?;
    ///         Ok::<_, netref::Error>(format!("they said {reply}"))
    ///     })
    ///     .build();
    /// # let _ = relay;
    /// ```
    pub fn async_method<Args, F, Fut, T, E>(mut self, name: &str, f: F) -> Self
    where
        F: Method<Args, Output = Fut>,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: fmt::Display + 'static,
    {
        let callee = self.callee(name);
        self.methods.insert(name.to_owned(), asynchronous(callee, f));
        self
    }

    /// Exposes a fixed attribute.
    pub fn attr(mut self, name: &str, value: impl Serialize) -> Self {
        let attr = match to_value(&value) {
            Ok(v) => Attr::Fixed(v),
            Err(e) => {
                let e = RemoteError::from_error(&placed(e, &Place::Attribute { name: name.to_owned() }));
                Attr::Getter(Arc::new(move || Err(e.clone())))
            }
        };
        self.attrs.insert(name.to_owned(), attr);
        self
    }

    /// Exposes an attribute computed on each read.
    pub fn getter<T: Serialize>(mut self, name: &str, f: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let place = Place::Attribute { name: name.to_owned() };
        self.attrs.insert(name.to_owned(), Attr::Getter(Arc::new(move || converted(&place, f()))));
        self
    }

    /// Makes the object itself callable.
    pub fn callable<Args, F: Method<Args>>(mut self, f: F) -> Self
    where
        F::Output: Serialize,
    {
        self.call = Some(plain(self.called(), f));
        self
    }

    /// Makes the object itself callable with a fallible closure.
    pub fn try_callable<Args, F, T, E>(mut self, f: F) -> Self
    where
        F: Method<Args, Output = Result<T, E>>,
        T: Serialize,
        E: fmt::Display + 'static,
    {
        self.call = Some(fallible(self.called(), f));
        self
    }

    /// Makes the object itself callable with an asynchronous closure, as
    /// [`async_method`](Self::async_method) exposes a method: what to pass
    /// where the peer expects a callback that waits on something.
    pub fn async_callable<Args, F, Fut, T, E>(mut self, f: F) -> Self
    where
        F: Method<Args, Output = Fut>,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: fmt::Display + 'static,
    {
        self.call = Some(asynchronous(self.called(), f));
        self
    }

    /// Exposes a method served by `handler` from the call's raw
    /// arguments: the typed layer's methods (`typed/export.rs`), which
    /// convert their arguments themselves.
    pub(crate) fn handler(
        mut self,
        name: &str,
        handler: impl Fn(Vec<Value>) -> Answer + Send + Sync + 'static,
    ) -> Self {
        self.methods.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// How errors name the method `name`: `Type.method`.
    fn callee(&self, name: &str) -> Arc<str> {
        format!("{}.{name}", self.type_name).into()
    }

    /// How errors name a call of the object itself: `Type()`.
    fn called(&self) -> Arc<str> {
        format!("{}()", self.type_name).into()
    }

    /// Finishes the object.
    pub fn build(self) -> LocalObject {
        let type_name = self.type_name;
        let methods = self
            .methods
            .into_iter()
            .map(|(name, handler)| {
                let bound = LocalObject::new(BoundMethod {
                    name: format!("{type_name}.{name}"),
                    handler: handler.clone(),
                    params: self.params.get(&name).cloned(),
                });
                (name, (handler, bound))
            })
            .collect();
        LocalObject::new(Built {
            type_name,
            methods,
            params: self.params,
            attrs: self.attrs,
            call: self.call,
        })
    }
}

/// A callable local object from a closure: what to pass where the peer
/// expects a callback.
///
/// ```
/// let on_change = netref::callback(|old: u64, new: u64| println!("{old} -> {new}"));
/// # let _ = on_change;
/// ```
pub fn callback<Args, F: Method<Args>>(f: F) -> LocalObject
where
    F::Output: Serialize,
{
    ObjectBuilder::new("callback").callable(f).build()
}

/// A handler for a closure that cannot fail.
fn plain<Args, F: Method<Args>>(callee: Arc<str>, f: F) -> Handler
where
    F::Output: Serialize,
{
    Arc::new(move |args| {
        Answer::Ready(calling(&callee, || f.invoke(args)).and_then(|t| returned(&callee, t)))
    })
}

/// A handler for a closure returning `Result<T, E>`.
fn fallible<Args, F, T, E>(callee: Arc<str>, f: F) -> Handler
where
    F: Method<Args, Output = Result<T, E>>,
    T: Serialize,
    E: fmt::Display + 'static,
{
    Arc::new(move |args| {
        Answer::Ready(match calling(&callee, || f.invoke(args)) {
            Ok(result) => answered(&callee, result),
            Err(e) => Err(e),
        })
    })
}

/// A handler for a closure returning a future of `Result<T, E>`. Its
/// arguments convert when the call starts, so a wrong one is refused at
/// once, as for any other method.
fn asynchronous<Args, F, Fut, T, E>(callee: Arc<str>, f: F) -> Handler
where
    F: Method<Args, Output = Fut>,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
    E: fmt::Display + 'static,
{
    Arc::new(move |args| match calling(&callee, || f.invoke(args)) {
        Ok(future) => {
            let callee = callee.clone();
            Answer::Later(Box::pin(async move { answered(&callee, future.await) }))
        }
        Err(e) => Answer::Ready(Err(e)),
    })
}

/// What a fallible `callee` returned, as the peer's answer.
fn answered<T: Serialize, E: fmt::Display + 'static>(callee: &str, result: Result<T, E>) -> CallResult {
    match result {
        Ok(t) => returned(callee, t),
        Err(e) => Err(RemoteError::from_error(&e)),
    }
}

/// What `callee` returned, as a value for the peer.
fn returned<T: Serialize>(callee: &str, t: T) -> CallResult {
    converted(&Place::Result { method: Some(callee.to_owned()) }, t)
}

/// `t` as a value for the peer; a failure is a `TypeError` naming `place`.
pub(crate) fn converted<T: Serialize>(place: &Place, t: T) -> CallResult {
    into_value(t).map_err(|e| type_error_at(place, e))
}

/// A conversion failure at `place` as the `TypeError` the peer receives:
/// its message is exactly the conversion error's text.
pub(crate) fn type_error_at(place: &Place, e: Error) -> RemoteError {
    match placed(e, place) {
        Error::Convert(c) => RemoteError::type_error(c.to_string()),
        other => RemoteError::type_error(format!("{place}: {other}")),
    }
}

thread_local! {
    /// What this thread is calling now (`Type.method`, `Type()`), set by
    /// [`ObjectBuilder`]'s handlers around [`Invoke::invoke`] so that the
    /// argument and arity errors it makes name the callee, through any
    /// wrapper an event-loop crate puts around the closure.
    static CALLEE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `f` with `callee` as what this thread is calling (restored after,
/// so nested calls name their own).
fn calling<R>(callee: &Arc<str>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take();
            // `try_with`: the thread's locals may be going away.
            let _ = CALLEE.try_with(|c| *c.borrow_mut() = saved);
        }
    }
    let _restore = Restore(CALLEE.with(|c| c.replace(Some(callee.clone()))));
    f()
}

/// What this thread is calling, if an [`ObjectBuilder`] handler said.
fn callee() -> Option<String> {
    CALLEE.with(|c| c.borrow().as_deref().map(str::to_owned))
}

struct Built {
    type_name: String,
    /// Each method, and the one bound method its attribute reads return:
    /// one object however often the peer reads it, so lookups cannot fill
    /// the export table (a bound method made per read was exported anew
    /// each time, until `max_exported` refused).
    methods: HashMap<String, (Handler, LocalObject)>,
    params: HashMap<String, Vec<String>>,
    attrs: HashMap<String, Attr>,
    call: Option<Handler>,
}

impl Object for Built {
    fn type_name(&self) -> &str {
        &self.type_name
    }

    fn call_method(&self, name: &str, args: Vec<Value>) -> CallResult {
        self.start_method(name, args).into_ready(|| format!("{}.{name}", self.type_name))
    }

    fn start_method(&self, name: &str, args: Vec<Value>) -> Answer {
        match self.methods.get(name) {
            Some((m, _)) => m(args),
            None => Answer::Ready(Err(RemoteError::attribute(&self.type_name, name))),
        }
    }

    fn getattr(&self, name: &str) -> CallResult {
        if let Some(attr) = self.attrs.get(name) {
            return match attr {
                Attr::Fixed(v) => Ok(v.clone()),
                Attr::Getter(g) => g(),
            };
        }
        // A method read as an attribute is a bound method, as in Python.
        if let Some((_, bound)) = self.methods.get(name) {
            return Ok(Value::from(bound.clone()));
        }
        Err(RemoteError::attribute(&self.type_name, name))
    }

    fn call(&self, args: Vec<Value>) -> CallResult {
        self.start_call(args).into_ready(|| format!("{}()", self.type_name))
    }

    fn start_call(&self, args: Vec<Value>) -> Answer {
        match &self.call {
            Some(c) => c(args),
            None => Answer::Ready(Err(RemoteError::type_error(format!(
                "'{}' object is not callable",
                self.type_name
            )))),
        }
    }

    fn dir(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.keys().chain(self.attrs.keys()).cloned().collect();
        names.sort();
        names
    }

    fn parameters(&self, method: Option<&str>) -> Option<&[String]> {
        self.params.get(method?).map(Vec::as_slice)
    }
}

struct BoundMethod {
    name: String,
    handler: Handler,
    /// The method's parameter names, when known.
    params: Option<Vec<String>>,
}

impl Object for BoundMethod {
    fn type_name(&self) -> &str {
        &self.name
    }
    fn call(&self, args: Vec<Value>) -> CallResult {
        self.start_call(args).into_ready(|| self.name.clone())
    }
    fn start_call(&self, args: Vec<Value>) -> Answer {
        (self.handler)(args)
    }
    fn parameters(&self, method: Option<&str>) -> Option<&[String]> {
        method.is_none().then_some(self.params.as_deref()?)
    }
}

/// A closure that can serve a call: `Fn(A1, ..., An) -> R` for up to eight
/// arguments, each deserializable from a [`Value`]. It need not be `Send`;
/// [`Method`] adds that. Event-loop crates use it to wrap closures that must
/// run on the loop's thread (netref-glib's `callback` for GTK widgets).
///
/// `Args` is a marker (the argument tuple) that lets one closure type
/// implement this for exactly one arity.
///
/// A wrong number of arguments, or an argument that does not convert, is a
/// `TypeError` in Python's words, naming what is called when an
/// [`ObjectBuilder`] method or callable (or a [`callback`]) runs it:
/// ``argument 2 of `FileMonitor.watch`: expected a callback (a remote
/// object), got the integer 1``, or `` `Calc.add` takes 2 arguments but 3
/// were given ``.
pub trait Invoke<Args>: 'static {
    /// What the closure returns.
    type Output;
    /// Checks the arity, converts the arguments and calls the closure.
    fn invoke(&self, args: Vec<Value>) -> Result<Self::Output, RemoteError>;
}

/// A closure that can serve a call with a context lent by its caller:
/// `Fn(&mut C, A1, ..., An) -> R` for up to eight arguments. netref-calloop
/// uses it to give callbacks the loop's shared data (`C` is the loop's
/// `Data`); the arguments convert as for [`Invoke`].
pub trait InvokeWith<C, Args>: 'static {
    /// What the closure returns.
    type Output;
    /// Checks the arity, converts the arguments and calls the closure with `cx`.
    fn invoke_with(&self, cx: &mut C, args: Vec<Value>) -> Result<Self::Output, RemoteError>;
}

/// A closure usable as an exposed method: an [`Invoke`] that any serving
/// thread may call.
pub trait Method<Args>: Invoke<Args> + Send + Sync {}

impl<Args, F: Invoke<Args> + Send + Sync> Method<Args> for F {}

/// Converts the argument at `index` (from 0): an error names its position
/// and the callee.
fn arg<T: DeserializeOwned>(v: Value, index: usize) -> Result<T, RemoteError> {
    from_value(v).map_err(|e| type_error_at(&Place::Argument { position: index + 1, callee: callee() }, e))
}

/// "`Calc.add` takes 2 arguments but 3 were given", as Python words it.
fn arity_error(takes: usize, given: usize) -> RemoteError {
    let takes = match takes {
        1 => "1 argument".to_string(),
        n => format!("{n} arguments"),
    };
    let given = match given {
        1 => "1 was given".to_string(),
        n => format!("{n} were given"),
    };
    RemoteError::type_error(match callee() {
        Some(c) => format!("`{c}` takes {takes} but {given}"),
        None => format!("takes {takes} but {given}"),
    })
}

macro_rules! impl_method {
    ($n:expr; $($a:ident),*) => {
        impl<F, R, $($a),*> Invoke<($($a,)*)> for F
        where
            F: Fn($($a),*) -> R + 'static,
            $($a: DeserializeOwned,)*
        {
            type Output = R;
            #[allow(unused_variables, unused_mut, non_snake_case)]
            fn invoke(&self, args: Vec<Value>) -> Result<R, RemoteError> {
                if args.len() != $n {
                    return Err(arity_error($n, args.len()));
                }
                let mut it = args.into_iter().enumerate();
                $(let $a = { let (i, v) = it.next().expect("arity checked"); arg::<$a>(v, i)? };)*
                Ok(self($($a),*))
            }
        }
    };
}

// `InvokeWith` converts its arguments through `Invoke` itself (a function
// returning its arguments as a tuple), so both read them the same way.
macro_rules! impl_invoke_with {
    ($($a:ident),*) => {
        impl<C, F, R, $($a),*> InvokeWith<C, ($($a,)*)> for F
        where
            F: Fn(&mut C, $($a),*) -> R + 'static,
            $($a: DeserializeOwned + 'static,)*
        {
            type Output = R;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn invoke_with(&self, cx: &mut C, args: Vec<Value>) -> Result<R, RemoteError> {
                #[allow(clippy::too_many_arguments)]
                fn unpack<$($a),*>($($a: $a),*) -> ($($a,)*) {
                    ($($a,)*)
                }
                let ($($a,)*) = Invoke::<($($a,)*)>::invoke(&unpack::<$($a),*>, args)?;
                Ok(self(cx, $($a),*))
            }
        }
    };
}

impl_invoke_with!();
impl_invoke_with!(A1);
impl_invoke_with!(A1, A2);
impl_invoke_with!(A1, A2, A3);
impl_invoke_with!(A1, A2, A3, A4);
impl_invoke_with!(A1, A2, A3, A4, A5);
impl_invoke_with!(A1, A2, A3, A4, A5, A6);
impl_invoke_with!(A1, A2, A3, A4, A5, A6, A7);
impl_invoke_with!(A1, A2, A3, A4, A5, A6, A7, A8);

impl_method!(0;);
impl_method!(1; A1);
impl_method!(2; A1, A2);
impl_method!(3; A1, A2, A3);
impl_method!(4; A1, A2, A3, A4);
impl_method!(5; A1, A2, A3, A4, A5);
impl_method!(6; A1, A2, A3, A4, A5, A6);
impl_method!(7; A1, A2, A3, A4, A5, A6, A7);
impl_method!(8; A1, A2, A3, A4, A5, A6, A7, A8);
