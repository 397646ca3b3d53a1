use std::sync::Arc;
use tokio::sync::Semaphore;

/// A tool to limit the number of blocking threads used concurrently to prevent
/// runtime starvation.
///
/// Also shortcuts for single-threaded tokio runtime to simply call the function, unlike
/// "tokio::task::block_in_place" which would panic.
#[derive(Clone, Debug)]
pub struct BlockingSpawner {
    allow_block_in_place: bool,
    concurrent_block_in_place_semaphore: Arc<Semaphore>,
    /// swarmvm patch: see `with_inline_chunk_io`.
    inline_chunk_io: bool,
}

impl BlockingSpawner {
    pub fn new(max_blocking_threads: usize) -> Self {
        let handle = tokio::runtime::Handle::current();
        let allow_block_in_place = match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => false,
            tokio::runtime::RuntimeFlavor::MultiThread => true,
            _ => true,
        };
        Self {
            allow_block_in_place,
            concurrent_block_in_place_semaphore: Arc::new(Semaphore::new(
                max_blocking_threads.max(1),
            )),
            inline_chunk_io: false,
        }
    }

    /// swarmvm patch: run the per-chunk I/O ([`Self::chunk_io`]: reading a chunk to send,
    /// writing a received chunk and checking the piece it completes) inline on the calling
    /// worker thread when `inline` is true, instead of through `tokio::task::block_in_place`.
    /// Each `block_in_place` hands the worker's core to another thread (a futex wake and two
    /// context switches); for 16 KiB of storage in the page cache that costs far more than
    /// the I/O, and with many peers it was half of all CPU time. A slow disk then stalls the
    /// worker for one chunk's I/O. Everything else (a torrent's initial check, file set-up)
    /// still goes through `block_in_place`.
    pub fn with_inline_chunk_io(mut self, inline: bool) -> Self {
        self.inline_chunk_io = inline;
        self
    }

    /// Runs one chunk's disk I/O: inline if [`Self::with_inline_chunk_io`] said so,
    /// otherwise like [`Self::block_in_place_with_semaphore`].
    pub async fn chunk_io<F: FnOnce() -> R, R>(&self, f: F) -> R {
        if self.inline_chunk_io {
            return f();
        }
        self.block_in_place_with_semaphore(f).await
    }

    /// Only call this if you can't call the async function block_in_place_with_semaphore
    /// E.g. if you you have non-send objects on the stack.
    pub fn block_in_place<F: FnOnce() -> R, R>(&self, f: F) -> R {
        if self.allow_block_in_place {
            return tokio::task::block_in_place(f);
        }

        f()
    }

    /// like "block_in_place" but limit concurrency.
    pub async fn block_in_place_with_semaphore<F: FnOnce() -> R, R>(&self, f: F) -> R {
        if self.allow_block_in_place {
            let _permit = self
                .concurrent_block_in_place_semaphore
                .acquire()
                .await
                .unwrap();
            return tokio::task::block_in_place(f);
        }

        f()
    }

    pub fn semaphore(&self) -> Arc<Semaphore> {
        self.concurrent_block_in_place_semaphore.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::BlockingSpawner;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// On a runtime with one worker, runs a blocking closure as chunk I/O while another task
    /// is ready; says whether that task ran while the closure was blocking (it waits for it
    /// up to `wait`).
    fn other_task_ran_during_chunk_io(inline: bool, wait: Duration) -> bool {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::spawn(async move {
                let spawner = BlockingSpawner::new(1).with_inline_chunk_io(inline);
                let ran = Arc::new(AtomicBool::new(false));
                let flag = ran.clone();
                tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
                spawner
                    .chunk_io(|| {
                        let until = Instant::now() + wait;
                        while !ran.load(Ordering::SeqCst) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        ran.load(Ordering::SeqCst)
                    })
                    .await
            })
            .await
            .unwrap()
        })
    }

    #[test]
    fn chunk_io_hands_the_worker_to_other_tasks_by_default() {
        // Returns as soon as the other task ran; the wait only bounds a failure.
        assert!(other_task_ran_during_chunk_io(
            false,
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn inline_chunk_io_keeps_the_worker() {
        assert!(!other_task_ran_during_chunk_io(
            true,
            Duration::from_millis(500)
        ));
    }
}
