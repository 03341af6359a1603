//! One scheduled or manual backup of a policy, as the CLI and the daemon run it: stop the
//! labelled containers when the policy is cold, back up, always start them again, then
//! prune the destinations that succeeded.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::backup::{self, BackupOptions, BackupReport};
use crate::config::Policy;
use crate::quiesce::Quiescer;

/// Where state lives and how Docker is reached.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// State directory (run logs, schedule state, stopped-container records).
    pub state_dir: PathBuf,
    /// Docker endpoint for cold backups.
    pub docker_host: Option<String>,
}

/// The default state directory: `ARCA_STATE_DIR`, else `/var/lib/arca` when writable,
/// else a per-user directory.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ARCA_STATE_DIR") {
        return PathBuf::from(d);
    }
    let system = Path::new("/var/lib/arca");
    if std::fs::create_dir_all(system).is_ok() {
        let probe = system.join(".arca-probe");
        if std::fs::write(&probe, b"").is_ok() {
            let _ = std::fs::remove_file(probe);
            return system.to_path_buf();
        }
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/arca"))
        .unwrap_or_else(|| std::env::temp_dir().join("arca-state"))
}

/// Back up `policy` with quiesce and prune. Err is one line.
pub async fn backup_policy(
    policy: &Policy,
    settings: &RunnerSettings,
) -> Result<BackupReport, String> {
    let cold = policy
        .spec
        .quiesce
        .as_ref()
        .is_some_and(|q| q.stop_containers);
    let quiescer = if cold {
        Some(
            Quiescer::connect(settings.docker_host.as_deref(), &settings.state_dir)
                .await
                .map_err(|e| format!("cold backup of policy {:?} not started: {e}", policy.name))?,
        )
    } else {
        None
    };
    let mut stopped = false;
    if let Some(q) = &quiescer {
        match q.stop(&policy.name).await {
            Ok(list) => stopped = !list.is_empty(),
            Err(e) => {
                return Err(format!(
                    "cold backup of policy {:?} not started: {e}",
                    policy.name
                ))
            }
        }
    }
    let result = backup::run(
        policy,
        &BackupOptions {
            quiesced: stopped,
            ..Default::default()
        },
    )
    .await;
    let restart = match &quiescer {
        Some(q) => q.start(&policy.name).await.err(),
        None => None,
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let mut msg = format!("backup of policy {:?} failed: {e}", policy.name);
            if let Some(r) = restart {
                msg.push_str(&format!("; and {r}"));
            }
            return Err(msg);
        }
    };
    if let Some(r) = restart {
        return Err(format!(
            "snapshot {} was taken but the stopped containers did not all start again: {r}",
            report.snapshot
        ));
    }
    // Retention runs after success only, at the destinations that succeeded.
    let good: Vec<String> = report
        .destinations
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    for r in crate::prune::run(policy, Some(&good), false).await {
        match r {
            Ok(p) => {
                let deleted = p.decisions.iter().filter(|d| !d.keep).count();
                if deleted > 0 || !p.leftovers.is_empty() {
                    info!(destination = %p.destination, deleted, leftovers = p.leftovers.len(), "pruned");
                }
                for e in p.errors {
                    warn!(destination = %p.destination, "prune: {e}");
                }
            }
            Err(e) => warn!("prune: {e}"),
        }
    }
    Ok(report)
}
