//! Cold backups in compose: the containers labelled `arca.stop-during-backup=<policy>` are
//! stopped through the Docker API before capture, and exactly those that were running are
//! started again afterwards — also when the backup fails. Which containers were stopped is
//! written to the state directory *before* stopping them, so after a crash the next start
//! (`recover`) brings them back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use tracing::{info, warn};

/// The label that marks containers to stop for a policy.
pub const STOP_LABEL: &str = "arca.stop-during-backup";
/// Seconds a container gets to stop before it is killed.
const STOP_TIMEOUT_SECS: i32 = 60;

/// A Docker problem; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum QuiesceError {
    /// The API cannot be reached.
    #[error("cannot reach the Docker API ({endpoint}): {detail}; mount /var/run/docker.sock into the arca container or set DOCKER_HOST")]
    Unreachable {
        /// Endpoint.
        endpoint: String,
        /// Error.
        detail: String,
    },
    /// A call failed.
    #[error("docker: {0}")]
    Call(String),
    /// The record could not be written: nothing is stopped without it.
    #[error(
        "cannot record the containers to restart in {path}: {detail}; check the state directory"
    )]
    Record {
        /// Path.
        path: String,
        /// Error.
        detail: String,
    },
}

/// A connection to the Docker engine.
pub struct Quiescer {
    docker: Docker,
    endpoint: String,
    state_dir: PathBuf,
}

fn record_path(state_dir: &Path, policy: &str) -> PathBuf {
    state_dir.join(format!("stopped-{policy}.json"))
}

impl Quiescer {
    /// Connect (`docker_host`, else `DOCKER_HOST`, else the local socket) and check it answers.
    pub async fn connect(
        docker_host: Option<&str>,
        state_dir: &Path,
    ) -> Result<Self, QuiesceError> {
        let endpoint = docker_host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |detail: String| QuiesceError::Unreachable {
            endpoint: endpoint.clone(),
            detail,
        };
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_socket(path, 30, bollard::API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, 30, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_socket(&endpoint, 30, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            docker,
            endpoint,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Running containers labelled for `policy`: (id, name).
    pub async fn labelled_running(
        &self,
        policy: &str,
    ) -> Result<Vec<(String, String)>, QuiesceError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{STOP_LABEL}={policy}")]);
        filters.insert("status".to_string(), vec!["running".to_string()]);
        let opts = ListContainersOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| QuiesceError::Call(e.to_string()))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_else(|| id.chars().take(12).collect())
                    .trim_start_matches('/')
                    .to_string();
                Some((id, name))
            })
            .collect())
    }

    /// Stop the running labelled containers; returns what was stopped (also recorded on disk).
    pub async fn stop(&self, policy: &str) -> Result<Vec<(String, String)>, QuiesceError> {
        let running = self.labelled_running(policy).await?;
        if running.is_empty() {
            warn!(
                policy,
                "quiesce: no running container is labelled {STOP_LABEL}={policy}"
            );
            return Ok(running);
        }
        let path = record_path(&self.state_dir, policy);
        let rec = serde_json::to_vec(&running).unwrap_or_default();
        std::fs::create_dir_all(&self.state_dir)
            .and_then(|_| std::fs::write(&path, rec))
            .map_err(|e| QuiesceError::Record {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        for (id, name) in &running {
            info!(policy, container = %name, "stopping for a cold backup");
            let opts = StopContainerOptionsBuilder::new()
                .t(STOP_TIMEOUT_SECS)
                .build();
            if let Err(e) = self.docker.stop_container(id, Some(opts)).await {
                // Bring back what was already stopped, then fail.
                let _ = self.start(policy).await;
                return Err(QuiesceError::Call(format!("stopping {name}: {e}")));
            }
        }
        Ok(running)
    }

    /// Start again what `stop` recorded; removes the record when all are running.
    pub async fn start(&self, policy: &str) -> Result<(), QuiesceError> {
        let path = record_path(&self.state_dir, policy);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        let stopped: Vec<(String, String)> = serde_json::from_slice(&bytes).unwrap_or_default();
        let mut errors = Vec::new();
        for (id, name) in &stopped {
            let mut attempt = 0;
            loop {
                match self
                    .docker
                    .start_container(id, None::<StartContainerOptions>)
                    .await
                {
                    Ok(()) => {
                        info!(policy, container = %name, "started again");
                        break;
                    }
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 304,
                        ..
                    }) => break,
                    Err(e) if attempt < 3 => {
                        attempt += 1;
                        warn!(container = %name, "start failed ({e}), retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Err(e) => {
                        errors.push(format!("{name}: {e}"));
                        break;
                    }
                }
            }
        }
        if errors.is_empty() {
            let _ = std::fs::remove_file(&path);
            Ok(())
        } else {
            Err(QuiesceError::Call(format!(
                "could not start again: {}",
                errors.join("; ")
            )))
        }
    }

    /// After a crash: start whatever any policy's record says was stopped.
    pub async fn recover(&self) {
        let Ok(rd) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(policy) = name
                .strip_prefix("stopped-")
                .and_then(|n| n.strip_suffix(".json"))
            {
                warn!(
                    policy,
                    "containers were left stopped by an interrupted backup: starting them"
                );
                if let Err(err) = self.start(policy).await {
                    warn!(policy, "{err}");
                }
            }
        }
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}
