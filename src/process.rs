//! Whether a process another fer-lab left behind is still running: a worker holding a run's
//! lease, an import writing a cache's temporary folder.

/// Whether `pid` is a live process. A zombie does not count: the worker of a killed scheduler
/// lingers as one until something reaps it, and it will never do anything again.
pub fn alive(pid: i64) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 || nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // /proc/<pid>/stat is "pid (comm) state …"; comm may contain spaces and parentheses.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        // No procfs: kill(pid, 0) succeeded, so it exists.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_live_process_a_reaped_one_and_a_zombie() {
        assert!(super::alive(i64::from(std::process::id())));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        // Exited but not yet waited for: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while super::alive(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!super::alive(pid));
        assert!(!super::alive(0) && !super::alive(-1));
    }
}
