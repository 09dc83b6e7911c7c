//! The loop's shared data, lent to the callbacks the peer calls while the
//! loop serves a connection.
//!
//! Some loops (calloop) hand their shared `&mut D` only to the callback of
//! the source that fired, yet netref's callbacks run deep inside
//! [`Driver::step`](crate::Driver::step), which knows nothing of `D`. The
//! backend wraps its step in [`lend_loop_data`]; a
//! [`loop_data_callback`] made for the same `D` reaches the data then, and
//! refuses with a clear `RuntimeError` otherwise.

use std::any::{type_name, TypeId};
use std::cell::Cell;
use std::marker::PhantomData;

use serde::Serialize;

use crate::connection::loop_thread::thread_callback;
use crate::error::RemoteError;
use crate::value::object::{Invoke, InvokeWith, LocalObject};
use crate::value::Value;

/// What this thread lends loop-data callbacks right now.
#[derive(Clone, Copy)]
enum Lend {
    /// Nothing: no connection is being served by its loop's dispatch.
    Idle,
    /// The `&mut D` given to `lend_loop_data`, while its closure runs.
    Data { ptr: *mut (), ty: TypeId, name: &'static str },
    /// Taken by the callback that runs now.
    Busy,
}

thread_local! {
    static LENT: Cell<Lend> = const { Cell::new(Lend::Idle) };
}

/// Puts back what was lent before, also when unwinding.
struct Restore(Lend);

impl Drop for Restore {
    fn drop(&mut self) {
        LENT.set(self.0);
    }
}

/// Runs `f` (typically [`Driver::step`](crate::Driver::step)) with `data`,
/// the loop's shared data, lent to the [`loop_data_callback`]s that run on
/// this thread meanwhile.
pub fn lend_loop_data<D: 'static, R>(data: &mut D, f: impl FnOnce() -> R) -> R {
    let ptr = (data as *mut D).cast::<()>();
    let _restore = Restore(LENT.replace(Lend::Data { ptr, ty: TypeId::of::<D>(), name: type_name::<D>() }));
    f()
}

/// Calls `f` with the data lent to this thread, taking it out meanwhile.
/// `lender` names the loop in errors.
fn with_lent<D: 'static, R>(lender: &str, f: impl FnOnce(&mut D) -> R) -> Result<R, RemoteError> {
    match LENT.get() {
        Lend::Data { ptr, ty, .. } if ty == TypeId::of::<D>() => {
            let _restore = Restore(LENT.replace(Lend::Busy));
            // SAFETY: `ptr` is the `&mut D` that `lend_loop_data` holds,
            // unused, for the whole of its closure; it is in this thread's
            // `LENT` only during that closure (`Restore` takes it out on
            // return and on unwind), so it is live, and only this thread
            // sees it. The type is checked above. While this reference
            // exists `LENT` says `Busy`, so no second `&mut` is made from the
            // pointer, and `f` cannot keep the reference past its call (its
            // lifetime is the closure's argument's).
            Ok(f(unsafe { &mut *ptr.cast::<D>() }))
        }
        Lend::Data { name, .. } => Err(RemoteError::new(
            "RuntimeError",
            format!(
                "a loop-data callback for `{}` was called while the loop lends `{name}`: make it for the \
                 data type of the loop its connection is attached to",
                type_name::<D>()
            ),
        )),
        Lend::Busy => Err(RemoteError::new(
            "RuntimeError",
            "a loop-data callback was called while another one runs (a synchronous call made inside \
             it was answered by a call to a loop-data callback): the loop's data is already lent to \
             the outer one; make that call asynchronous, or use netref::callback for the inner callback",
        )),
        Lend::Idle => Err(RemoteError::new(
            "RuntimeError",
            format!(
                "a loop-data callback was called outside {lender}'s dispatch of its connection (a \
                 synchronous call made outside the loop's callbacks, or a connection not attached with \
                 netref-{lender}): it reaches the loop's data only while the loop serves the connection"
            ),
        )),
    }
}

/// A callback for the peer (a [`LocalObject`], like
/// [`thread_callback`](crate::thread_callback), so it need not be `Send`)
/// that reaches the loop's shared data: `f` is `Fn(&mut D, A1, ..., An) ->
/// R`. It gets the `&mut D` of the [`lend_loop_data`] that serves the call;
/// the peer gets a `RuntimeError` instead when nothing is lent (the call is
/// served outside the loop's dispatch; `lender`, the loop's name, says
/// whose), another `D` is, or another loop-data callback holds it (a nested
/// call cannot get a second `&mut D`).
pub fn loop_data_callback<D, Args, F>(lender: &'static str, f: F) -> LocalObject
where
    D: 'static,
    Args: 'static,
    F: InvokeWith<D, Args>,
    F::Output: Serialize,
{
    thread_callback(WithData { f, lender, marker: PhantomData })
}

/// A closure that takes the lent data first.
struct WithData<F, D, Args> {
    f: F,
    lender: &'static str,
    marker: PhantomData<fn(D) -> Args>,
}

impl<D: 'static, Args: 'static, F: InvokeWith<D, Args>> Invoke<Args> for WithData<F, D, Args> {
    type Output = F::Output;

    fn invoke(&self, args: Vec<Value>) -> Result<F::Output, RemoteError> {
        with_lent(self.lender, |data: &mut D| self.f.invoke_with(data, args))?
    }
}
