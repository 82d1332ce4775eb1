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
