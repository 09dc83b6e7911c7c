//! Callbacks bound to the thread that made them (an event loop's), so they
//! may capture `!Send` values.
//!
//! A [`thread_callback`] runs only on its thread; called from another one it
//! refuses, and dropped on another one (the peer released it while another
//! thread served the connection, or the connection was closed from another
//! thread) its captures are not dropped there: they are handed back to
//! their thread, which drops them at its next [`Driver::step`](crate::Driver::step)
//! or when it ends. Those released after their thread ended are leaked.

use std::any::Any;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use serde::Serialize;

use crate::error::RemoteError;
use crate::value::object::{callback, Invoke, LocalObject};
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
    callback(OnThread { f: ThreadBound::new(f), marker: PhantomData })
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

/// A value touched only on the thread that made it: `Send` and `Sync`
/// because no other thread ever reaches it, and dropped on its thread
/// (see [`drop_orphans`]).
struct ThreadBound<T: 'static> {
    value: ManuallyDrop<T>,
    owner: ThreadId,
}

// SAFETY: the value is only reached through `get`, which hands it out on
// the owner thread only; elsewhere it is only moved (as bytes, in a box
// nobody opens) until the owner thread drops it.
unsafe impl<T: 'static> Send for ThreadBound<T> {}
// SAFETY: as above: a shared `&ThreadBound` gives other threads nothing.
unsafe impl<T: 'static> Sync for ThreadBound<T> {}

impl<T: 'static> ThreadBound<T> {
    fn new(value: T) -> Self {
        let _ = EXIT_SWEEP.try_with(|_| {}); // this thread sweeps its orphans when it ends
        ThreadBound { value: ManuallyDrop::new(value), owner: thread::current().id() }
    }

    fn get(&self) -> Option<&T> {
        (thread::current().id() == self.owner).then(|| &*self.value)
    }
}

impl<T: 'static> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        // SAFETY: `value` is taken once, here, and never used again.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        if thread::current().id() == self.owner {
            drop(value);
        } else {
            log::debug!("netref: a loop-thread callback was released on another thread; it dies on its own");
            let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
            orphans.push(Orphan { owner: self.owner, _value: Box::new(value) });
            WAITING.store(orphans.len(), Ordering::Release);
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
// owner thread (`drop_orphans`), or leaked: its value is never reached.
unsafe impl Send for Orphan {}

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
