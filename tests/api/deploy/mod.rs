//! The deployment files (Dockerfile, compose.yaml, deploy/nginx.conf,
//! deploy/k8s/): the cluster they describe, run from local binaries, and
//! checks of the manifests.

mod cluster;
mod compose_checks;
mod manifest_checks;
mod manifests;
mod nginx;
mod processes;
mod subscribers;

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A scratch directory under the system's temp dir, removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// A new empty directory named after `what` and this process.
    fn new(what: &str) -> ScratchDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "pgherald-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch directory");
        ScratchDir(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
