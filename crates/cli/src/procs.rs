//! Starting and stopping `netchaind` processes.

use anyhow::Context;
use netchain_client::Client;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing). The allocator
/// (mimalloc) returns freed memory to the system and touches it again soon after: with huge
/// pages every such touch faulted in and zeroed a whole 2 MB page, ~15 % of a validator's CPU
/// under load (docs/BENCHMARKS.md, stop 15). mimalloc's `no_thp` feature stops it asking for
/// huge pages; this also covers systems whose THP mode is `always`. Failure only costs speed.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Exit status of a validator stopped by a panic (EX_SOFTWARE, as for a failed execution).
pub const PANIC_EXIT_CODE: i32 = 70;

/// Makes a panic on any thread stop the whole process (crash-stop, exit status
/// [`PANIC_EXIT_CODE`]) once it is reported. Without it a panic ends only its own thread: a
/// validator whose batch checker or store thread died would run on without acknowledging
/// peers' batches, and one whose execution thread died would keep ordering blocks it never
/// executes. A restart resumes from the last durable state, which every part of the node
/// already supports.
pub fn crash_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %info,
            "a thread panicked: stopping the process"
        );
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// The `netchaind` binary next to the running executable (or `NETCHAIND` if set).
pub fn netchaind_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NETCHAIND") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    // Integration tests run from target/<profile>/deps; the binary is one level up.
    for candidate in [dir.join("netchaind"), dir.join("../netchaind")] {
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("netchaind")
}

/// One validator process; killed when dropped.
pub struct NodeProcess {
    /// The child.
    pub child: Child,
    /// Its node file.
    pub config: PathBuf,
}

impl NodeProcess {
    /// Starts `netchaind --config FILE`, with output appended to `log`.
    pub fn start(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            config: config.to_path_buf(),
        })
    }

    /// Kills the process (SIGKILL: no clean shutdown, as a crash would).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Waits until every node answers its status endpoint.
pub async fn wait_ready(clients: &[Client], timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    for c in clients {
        loop {
            if c.status().await.is_ok() {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "node at {} did not answer within {timeout:?}",
                c.base()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Child half of `a_panic_on_any_thread_stops_the_process`: a named thread panics while
    /// the main thread waits (and then ends the child normally, which the parent refuses).
    #[test]
    fn panic_child() {
        if std::env::var_os("NETCHAIN_PANIC_CHILD").is_none() {
            return;
        }
        crash_stop_on_panic();
        let _worker = std::thread::Builder::new()
            .name("batch-check".into())
            .spawn(|| panic!("deliberate"))
            .unwrap();
        std::thread::sleep(Duration::from_secs(20));
    }

    #[test]
    fn a_panic_on_any_thread_stops_the_process() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "procs::tests::panic_child", "--nocapture"])
            .env("NETCHAIN_PANIC_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(PANIC_EXIT_CODE), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("deliberate"), "{stderr}");
    }
}
