//! Callbacks bound to the thread that made them (an event loop's), so they
//! may capture `!Send` values.
//!
//! A [`thread_callback`] runs only on its thread; called from another one it
//! refuses, and dropped on another one (the peer released it while another
//! thread served the connection, or the connection was closed from another
//! thread) its captures are not dropped there: they are handed back to
//! their thread, which drops them at its next [`Driver::step`](crate::Driver::step)
//! or when it ends. Those released after their thread ended are leaked.
//!
//! A loop that can run a job on its thread when asked from another one
//! (GLib's `MainContext::invoke`) names that way as a [`LoopHome`]: its
//! callbacks ([`thread_callback_at`]) and one-shot handlers
//! ([`thread_handler`]) are then sent home, whether or not a connection is
//! attached there to step.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};

use serde::Serialize;

use crate::error::RemoteError;
use crate::value::object::{callback, CallResult, Invoke, LocalObject, PendingAnswer};
use crate::value::Value;

/// A callback (a [`LocalObject`] the peer calls, like
/// [`callback`](crate::callback)) from a closure that need not be `Send`:
/// it may capture `Rc`s, `RefCell`s, loop-local state. It runs only on the
/// thread that made it, which must be the thread of the event loop the
/// connection is attached to (the loop serves the peer's calls there).
///
/// A call arriving on another thread (the connection is served elsewhere,
/// say by a [`BgServingThread`](crate::BgServingThread)) fails with a
/// `RuntimeError` naming the fix, without touching the captures. The
/// captures are always dropped on the callback's own thread: released
/// elsewhere, they wait for that thread's next drive step (or its end).
///
/// netref-mio and netref-polling re-export this as `callback`.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let seen: Rc<RefCell<Vec<String>>> = Rc::default();
/// let log = seen.clone();
/// let on_line = netref::thread_callback(move |line: String| log.borrow_mut().push(line));
/// # let _ = on_line;
/// ```
pub fn thread_callback<Args, F>(f: F) -> LocalObject
where
    Args: 'static,
    F: Invoke<Args>,
    F::Output: Serialize,
{
    callback(OnThread { f: ThreadBound::new(f, None), marker: PhantomData })
}

/// A job for a loop's thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// How a loop runs a [`Job`] on its thread when asked from any thread
/// (GLib's `MainContext::invoke`): where [`thread_callback_at`]'s and
/// [`thread_handler`]'s closures go when they are released or called
/// elsewhere. Cheap to clone.
#[derive(Clone)]
pub struct LoopHome(Arc<dyn Fn(Job) + Send + Sync>);

impl LoopHome {
    /// A home that hands each job to `run`, which must run it soon on the
    /// loop's thread (a job run on another thread leaves the closure to the
    /// orphan list instead of touching it, so a wrong home leaks late
    /// rather than unsoundly).
    pub fn new(run: impl Fn(Job) + Send + Sync + 'static) -> LoopHome {
        LoopHome(Arc::new(run))
    }
}

impl std::fmt::Debug for LoopHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHome").finish_non_exhaustive()
    }
}

/// A [`thread_callback`] whose captures, released on another thread, are
/// sent to `home` to be dropped, rather than waiting for the thread's next
/// drive step: for a loop thread that may have no connection attached.
pub fn thread_callback_at<Args, F>(home: &LoopHome, f: F) -> LocalObject
where
    Args: 'static,
    F: Invoke<Args>,
    F::Output: Serialize,
{
    callback(OnThread { f: ThreadBound::new(f, Some(home.clone())), marker: PhantomData })
}

/// Wraps a one-shot handler that captures `!Send` values so that an API
/// wanting a `Send` one takes it
/// ([`AsyncResult::add_callback`](crate::AsyncResult::add_callback),
/// [`Connection::on_close`](crate::Connection::on_close)). Called on the
/// thread that made it, it runs at once; called on another thread, it
/// clones its argument and runs on its thread through `home`. Dropped
/// without running, its captures are dropped at home too.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::sync::mpsc;
///
/// // A loop that runs the jobs it is sent (GLib: `MainContext::invoke`).
/// let (jobs, inbox) = mpsc::channel::<netref::Job>();
/// let home = netref::LoopHome::new(move |job| drop(jobs.send(job)));
/// let seen = Rc::new(Cell::new(0)); // !Send is fine
/// let s = seen.clone();
/// let handler = netref::thread_handler(&home, move |n: &i32| s.set(*n));
/// std::thread::spawn(move || handler(&7)).join().unwrap(); // called elsewhere: sent home
/// assert_eq!(seen.get(), 0);
/// inbox.recv().unwrap()(); // the loop's thread runs it
/// assert_eq!(seen.get(), 7);
/// ```
pub fn thread_handler<T, F>(home: &LoopHome, f: F) -> impl FnOnce(&T) + Send + 'static
where
    T: Clone + Send + 'static,
    F: FnOnce(&T) + 'static,
{
    let f = ThreadBound::new(f, Some(home.clone()));
    move |value: &T| match f.into_inner() {
        Ok(f) => f(value),
        Err(f) => {
            let value = value.clone();
            let home = f.home.clone().expect("made with a home");
            (home.0)(Box::new(move || {
                if let Ok(f) = f.into_inner() {
                    f(&value);
                }
            }));
        }
    }
}

/// A closure callable on its own thread only.
struct OnThread<F: 'static, Args> {
    f: ThreadBound<F>,
    // `fn() -> Args` keeps the marker Send + Sync whatever `Args` is.
    marker: PhantomData<fn() -> Args>,
}

impl<Args: 'static, F: Invoke<Args>> Invoke<Args> for OnThread<F, Args> {
    type Output = F::Output;

    fn invoke(&self, args: Vec<Value>) -> Result<F::Output, RemoteError> {
        match self.f.get() {
            Some(f) => f.invoke(args),
            // Misuse::WrongThread
            None => Err(RemoteError::new(
                "RuntimeError",
                "a loop-thread callback was called from another thread: it runs only on the thread \
                 that made it; attach the connection to that thread's event loop, so that the loop \
                 serves the peer's calls",
            )),
        }
    }
}

/// The answer of an asynchronous method whose future need not be `Send`
/// (a typed `#[netref(local)] async fn`): it is polled only on the thread
/// that started it, which is the thread serving the connection when the
/// call arrived (its event loop's, or a `ThreadedServer` connection's).
/// Polled on another thread (the connection is served by several), the
/// call fails with a `RuntimeError` naming `what`, the future untouched;
/// dropped on another thread, it dies on its own (see [`ThreadBound`]).
pub(crate) fn thread_answer(
    what: Arc<str>,
    future: impl Future<Output = CallResult> + 'static,
) -> PendingAnswer {
    let future: Pin<Box<dyn Future<Output = CallResult>>> = Box::pin(future);
    Box::pin(OnThreadAnswer { future: ThreadBound::new(future, None), what })
}

/// See [`thread_answer`].
struct OnThreadAnswer {
    future: ThreadBound<Pin<Box<dyn Future<Output = CallResult>>>>,
    what: Arc<str>,
}

impl Future for OnThreadAnswer {
    type Output = CallResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallResult> {
        match self.future.get_mut() {
            Some(future) => future.as_mut().poll(cx),
            None => Poll::Ready(Err(RemoteError::new(
                "RuntimeError",
                format!(
                    "`{}` runs only on the thread that started it, and another thread served the \
                     connection meanwhile: serve the connection from one thread (its event loop, \
                     or a ThreadedServer), or make the method's future `Send` (drop `#[netref(local)]`)",
                    self.what
                ),
            ))),
        }
    }
}

/// A value touched only on the thread that made it: `Send` and `Sync`
/// because no other thread ever reaches it, and dropped on its thread
/// (sent to its `home`, else see [`drop_orphans`]).
struct ThreadBound<T: 'static> {
    /// `None` once taken by `into_inner` or `drop`.
    value: Option<T>,
    owner: ThreadId,
    home: Option<LoopHome>,
}

// SAFETY: the value is only reached through `get` and `into_inner`, which
// hand it out on the owner thread only; elsewhere it is only moved (as
// bytes, in a box nobody opens) until the owner thread drops it. The other
// fields (`ThreadId`, `LoopHome`) are `Send + Sync` themselves.
unsafe impl<T: 'static> Send for ThreadBound<T> {}
// SAFETY: as above: a shared `&ThreadBound` gives other threads nothing of
// the value.
unsafe impl<T: 'static> Sync for ThreadBound<T> {}

impl<T: 'static> ThreadBound<T> {
    fn new(value: T, home: Option<LoopHome>) -> Self {
        let _ = EXIT_SWEEP.try_with(|_| {}); // this thread sweeps its orphans when it ends
        ThreadBound { value: Some(value), owner: thread::current().id(), home }
    }

    fn get(&self) -> Option<&T> {
        self.value.as_ref().filter(|_| thread::current().id() == self.owner)
    }

    fn get_mut(&mut self) -> Option<&mut T> {
        let here = thread::current().id() == self.owner;
        self.value.as_mut().filter(|_| here)
    }

    /// The value, on its thread; elsewhere `self` back, untouched.
    fn into_inner(mut self) -> Result<T, Self> {
        match self.value.take_if(|_| thread::current().id() == self.owner) {
            Some(value) => Ok(value),
            None => Err(self),
        }
    }
}

impl<T: 'static> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else { return };
        if thread::current().id() == self.owner {
            return drop(value);
        }
        log::debug!("netref: a loop-thread value was released on another thread; it dies on its own");
        let orphan = Orphan { owner: self.owner, _value: Box::new(value) };
        match &self.home {
            Some(home) => (home.0)(Box::new(move || orphan.drop_here())),
            None => orphan.drop_here(),
        }
    }
}

/// Captures released off their thread, waiting for it.
struct Orphan {
    owner: ThreadId,
    /// Held only to be dropped by its owner.
    _value: Box<dyn Any>,
}

// SAFETY: an orphan is only moved between threads and dropped by its
// owner thread (`drop_here` there, or `drop_orphans`), or leaked: its value
// is never reached.
unsafe impl Send for Orphan {}

impl Orphan {
    /// Drops it if this is its thread; else queues it for its thread.
    fn drop_here(self) {
        if thread::current().id() == self.owner {
            return drop(self);
        }
        let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
        orphans.push(self);
        WAITING.store(orphans.len(), Ordering::Release);
    }
}

static ORPHANS: Mutex<Vec<Orphan>> = Mutex::new(Vec::new());
/// `ORPHANS.len()`, read without the lock on every drive step.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Drops the captures of this thread's callbacks that were released on
/// other threads. Every [`Driver::step`](crate::Driver::step) calls it.
pub(crate) fn drop_orphans() {
    if WAITING.load(Ordering::Acquire) == 0 {
        return;
    }
    let me = thread::current().id();
    let mine: Vec<Orphan> = {
        let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
        let mine = orphans.extract_if(.., |o| o.owner == me).collect();
        WAITING.store(orphans.len(), Ordering::Release);
        mine
    };
    // Outside the lock: a drop may release more callbacks.
    drop(mine);
}

/// Sweeps a thread's orphans when the thread ends.
struct ExitSweep;

impl Drop for ExitSweep {
    fn drop(&mut self) {
        drop_orphans();
    }
}

thread_local! {
    static EXIT_SWEEP: ExitSweep = const { ExitSweep };
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Sets its flag when dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_thread_answer_polled_elsewhere_fails_and_dies_at_home() {
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        let not_send = Rc::new(5);
        let answer = thread_answer("Tasks.rounds".into(), async move {
            let _keep = (&guard, &not_send);
            std::future::pending::<()>().await;
            Ok(Value::Null)
        });
        let polled = thread::spawn(move || {
            let mut answer = answer;
            let got = answer.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()));
            drop(answer); // on the wrong thread: handed home, not dropped here
            got
        })
        .join()
        .unwrap();
        match polled {
            Poll::Ready(Err(e)) => {
                assert_eq!(e.type_name, "RuntimeError");
                assert!(e.message.contains("`Tasks.rounds` runs only on the thread that started it"), "{e}");
            }
            other => panic!("expected the wrong-thread error, got {other:?}"),
        }
        assert!(!dropped.load(Ordering::SeqCst), "dropped off its thread");
        drop_orphans();
        assert!(dropped.load(Ordering::SeqCst), "its thread dropped it");
    }

    #[test]
    fn a_thread_answer_runs_on_its_thread() {
        let not_send = Rc::new(41);
        let mut answer = thread_answer("Tasks.rounds".into(), async move { Ok(Value::from(*not_send + 1)) });
        match answer.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(v)) => assert_eq!(v.as_i64(), Some(42)),
            other => panic!("expected 42, got {other:?}"),
        }
    }
}
