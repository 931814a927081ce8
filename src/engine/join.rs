//! Running futures together without an executor (the engine has none of its own): [`join`]
//! polls two until both are done; [`yield_now`] lets the others run.

use alloc::boxed::Box;
use core::future::Future;
use core::task::Poll;

/// Runs `a` and `b` side by side until both are done; their outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = Box::pin(a);
    let mut b = Box::pin(b);
    let (mut out_a, mut out_b) = (None, None);
    core::future::poll_fn(move |cx| {
        if out_a.is_none() {
            if let Poll::Ready(out) = a.as_mut().poll(cx) {
                out_a = Some(out);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(out) = b.as_mut().poll(cx) {
                out_b = Some(out);
            }
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                out_a = a;
                out_b = b;
                Poll::Pending
            }
        }
    })
    .await
}

/// Lets the host run its other ready tasks before this one goes on: pending once, woken at
/// once. Where an executor runs a task another woke only once the waker yields (tokio runs
/// it next on the same thread, from a slot other threads do not take), a task that keeps
/// finding work ready would otherwise hold it back for as long as that lasts.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}
