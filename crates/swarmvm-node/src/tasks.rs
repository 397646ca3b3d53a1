//! The node's background tasks: every part spawns through one [`Tasks`], so that stopping
//! the node tells them all and waits for them.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

/// The tasks a node started, and the signal that tells them to stop. Cloning gives another
/// handle to the same set.
#[derive(Debug, Clone)]
pub(crate) struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                handles: Mutex::new(Vec::new()),
                stop: watch::channel(false).0,
            }),
        }
    }

    /// Runs `task` on the runtime as part of the node: [`Tasks::stop`] waits for it.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut handles = self.inner.handles.lock();
        handles.retain(|t| !t.is_finished());
        handles.push(handle);
    }

    /// A receiver that changes when the node is asked to stop.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// True once the node was asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Tells every task to stop and waits for them, at most five seconds each (a task that
    /// does not end by itself, a long request say, is aborted then). Tasks they start while
    /// stopping are waited for too.
    pub(crate) async fn stop(&self) {
        self.inner.stop.send_replace(true);
        loop {
            let handles: Vec<_> = std::mem::take(&mut *self.inner.handles.lock());
            if handles.is_empty() {
                break;
            }
            for t in handles {
                let abort = t.abort_handle();
                if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                    abort.abort();
                }
            }
        }
    }
}

/// Waits for the next message on `rx` and takes up to `max` in all of those already waiting
/// behind it, so that a writer handles a burst in one go. `None` once `rx` is closed or
/// `stop` says the node is stopping.
pub(crate) async fn next_group<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &mut watch::Receiver<bool>,
    max: usize,
) -> Option<Vec<T>> {
    let first = tokio::select! {
        s = rx.recv() => s,
        _ = stop.wait_for(|s| *s) => None,
    }?;
    let mut group = vec![first];
    while group.len() < max {
        match rx.try_recv() {
            Ok(s) => group.push(s),
            Err(_) => break,
        }
    }
    Some(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_takes_what_waits_up_to_its_size_and_ends_with_the_stop() {
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, mut stop) = watch::channel(false);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(next_group(&mut rx, &mut stop, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(next_group(&mut rx, &mut stop, 3).await, Some(vec![3, 4]));
        stop_tx.send_replace(true);
        assert_eq!(next_group(&mut rx, &mut stop, 3).await, None);
        drop(tx);
        let (_still_running, mut stop) = watch::channel(false);
        assert_eq!(next_group(&mut rx, &mut stop, 3).await, None);
    }
}
