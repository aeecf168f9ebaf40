//! Running a slow, blocking job (a snapshot build: freeze, encode,
//! compress, write, fdatasync, rename) on a thread of its own, awaited from
//! any openraft runtime, so it never holds one of the runtime's threads.
//!
//! openraft 0.9.25 runs `build_snapshot` in a task it spawns on its runtime
//! (`sm::worker::Worker::build_snapshot`); a build that blocks inside that
//! task takes a runtime thread away from every other task (the Raft cores,
//! replication, the network) for as long as it runs, and the nodes of a
//! cluster reach their snapshot threshold at about the same index.

use crate::error::{Error, Result};
use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, RaftTypeConfig};

/// Runs `job` on a new thread named `name` and returns what it returned,
/// without blocking the calling task's thread. An `Err` only if the thread
/// could not be started or ended without an answer (it panicked).
pub(crate) async fn off_runtime<C, T>(name: &'static str, job: impl FnOnce() -> T + Send + 'static) -> Result<T>
where
    C: RaftTypeConfig,
    T: Send + 'static,
{
    let failed = |source| Error::Io { op: "run on a thread of its own:", path: name.into(), source };
    let (tx, rx) = C::AsyncRuntime::oneshot::<T>();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // The receiver is gone only if the awaiting task was dropped.
            let _ = tx.send(job());
        })
        .map_err(failed)?;
    rx.await.map_err(|e| failed(std::io::Error::other(format!("the thread ended without an answer: {e}"))))
}
