//! The one operating-system call walden makes that is not about files:
//! lowering a thread's CPU priority (the snapshot writer's). It lives here
//! because it needs `unsafe`, and `io/` is the only place that may.

use std::io;

/// Lowers the calling thread's CPU priority: raises its nice value by
/// `nice_increment` (capped at 19, the lowest priority there is). On Linux
/// the nice value is per thread, so other threads of the process keep
/// theirs. Elsewhere it does nothing and returns `Ok`. Best effort: the
/// caller decides whether a failure matters.
pub fn lower_current_thread_priority(nice_increment: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, getpriority and setpriority take plain integers
        // and touch no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, nice.saturating_add(nice_increment).min(19))
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice_increment;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn lowers_only_the_calling_thread() {
        // SAFETY: as above; plain integers in, an integer out.
        #[allow(unsafe_code)]
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice();
        let (inside_before, inside_after) = std::thread::spawn(move || {
            let inside_before = nice();
            super::lower_current_thread_priority(3).unwrap();
            (inside_before, nice())
        })
        .join()
        .unwrap();
        assert_eq!(inside_after, (inside_before + 3).min(19));
        assert_eq!(nice(), before, "the calling test thread keeps its priority");
    }
}
