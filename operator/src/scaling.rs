//! Cold backups and restores: scale Deployments/StatefulSets to zero and always bring them
//! back to exactly what was running, also when the Job fails and after an operator restart.
//!
//! The original replica count is written onto the workload (annotation
//! `arca.dev/original-replicas`, with who scaled it and for which Job) *before* it is
//! scaled to zero, so the record survives anything that happens to the operator. Scaling
//! back sets the recorded count and only then removes the annotations.

use std::collections::BTreeMap;

use arca_api::WorkloadRef;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::constants::{annotations, FIELD_MANAGER};
use crate::error::{Error, Result};

/// What the operator needs to know about a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The reference.
    pub reference: WorkloadRef,
    /// `spec.replicas` (Kubernetes' default 1 when unset).
    pub replicas: i32,
    /// `spec.selector`.
    pub selector: Option<LabelSelector>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Workload {
    /// `Kind/name`.
    pub fn display(&self) -> String {
        format!("{}/{}", self.reference.kind, self.reference.name)
    }

    /// Who scaled it down, per its annotation.
    pub fn quiesced_by(&self) -> Option<&str> {
        self.annotations
            .get(annotations::QUIESCED_BY)
            .map(String::as_str)
    }

    /// The Job it was scaled down for.
    pub fn quiesce_job(&self) -> Option<&str> {
        self.annotations
            .get(annotations::QUIESCE_JOB)
            .map(String::as_str)
    }

    /// The recorded replica count.
    pub fn original_replicas(&self) -> Option<i32> {
        self.annotations
            .get(annotations::ORIGINAL_REPLICAS)
            .and_then(|v| v.trim().parse().ok())
    }
}

/// `BackupPolicy/<name>` or `RestoreRequest/<name>`: the value of `arca.dev/quiesced-by`.
pub fn owner_tag(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// A label selector as a query string (`a=b,c in (d,e)`).
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Reads and scales the workloads of one namespace.
#[derive(Clone)]
pub struct Scaler {
    client: Client,
    namespace: String,
}

impl Scaler {
    /// A scaler for `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
        }
    }

    fn params() -> PatchParams {
        PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        }
    }

    /// Read `w`; None when it does not exist.
    pub async fn get(&self, w: &WorkloadRef) -> Result<Option<Workload>> {
        let (replicas, selector, annotations) = match w.kind.as_str() {
            "Deployment" => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                let Some(d) = api.get_opt(&w.name).await? else {
                    return Ok(None);
                };
                let spec = d.spec.unwrap_or_default();
                (spec.replicas, Some(spec.selector), d.metadata.annotations)
            }
            "StatefulSet" => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                let Some(s) = api.get_opt(&w.name).await? else {
                    return Ok(None);
                };
                let spec = s.spec.unwrap_or_default();
                (spec.replicas, Some(spec.selector), s.metadata.annotations)
            }
            other => {
                return Err(Error::Workload {
                    workload: format!("{other}/{}", w.name),
                    message: "only Deployment and StatefulSet can be scaled".into(),
                })
            }
        };
        Ok(Some(Workload {
            reference: w.clone(),
            replicas: replicas.unwrap_or(1),
            selector,
            annotations: annotations.unwrap_or_default(),
        }))
    }

    async fn patch_annotations(&self, w: &WorkloadRef, value: serde_json::Value) -> Result<()> {
        let patch = json!({"metadata": {"annotations": value}});
        match w.kind.as_str() {
            "Deployment" => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                api.patch(&w.name, &Self::params(), &Patch::Merge(&patch))
                    .await?;
            }
            _ => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                api.patch(&w.name, &Self::params(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    async fn scale(&self, w: &WorkloadRef, replicas: i32) -> Result<()> {
        let patch = json!({"spec": {"replicas": replicas}});
        match w.kind.as_str() {
            "Deployment" => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                api.patch_scale(&w.name, &Self::params(), &Patch::Merge(&patch))
                    .await?;
            }
            _ => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                api.patch_scale(&w.name, &Self::params(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// Scale `workloads` to zero for `job`, recording each one's replica count on it
    /// first. Idempotent: workloads already recorded by `owner` are only (re)scaled.
    /// Returns the workloads scaled now, or the first one another owner holds.
    pub async fn scale_down(
        &self,
        workloads: &[WorkloadRef],
        owner: &str,
        job: &str,
    ) -> Result<ScaleDown> {
        let mut scaled = Vec::new();
        for w in workloads {
            let Some(current) = self.get(w).await? else {
                return Err(Error::Workload {
                    workload: format!("{}/{}", w.kind, w.name),
                    message: format!("not found in namespace {}", self.namespace),
                });
            };
            match current.quiesced_by() {
                Some(o) if o == owner => {
                    if current.replicas != 0 {
                        self.scale(w, 0).await?;
                    }
                }
                Some(other) => {
                    return Ok(ScaleDown::HeldBy {
                        workload: current.display(),
                        owner: other.to_string(),
                    })
                }
                None => {
                    // NB: record first; a crash between the two calls leaves a record and
                    // a running workload, which scaling back handles.
                    self.patch_annotations(
                        w,
                        json!({
                            annotations::ORIGINAL_REPLICAS: current.replicas.to_string(),
                            annotations::QUIESCED_BY: owner,
                            annotations::QUIESCE_JOB: job,
                        }),
                    )
                    .await?;
                    self.scale(w, 0).await?;
                    scaled.push(current.display());
                }
            }
        }
        Ok(ScaleDown::Done { scaled })
    }

    /// Pods still running for `workloads` (including terminating ones), by workload.
    pub async fn remaining_pods(&self, workloads: &[WorkloadRef]) -> Result<Vec<(String, usize)>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut out = Vec::new();
        for w in workloads {
            let Some(current) = self.get(w).await? else {
                continue;
            };
            let Some(selector) = current.selector.as_ref().map(selector_string) else {
                continue;
            };
            if selector.is_empty() {
                continue;
            }
            let n = pods
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items
                .len();
            if n > 0 {
                out.push((current.display(), n));
            }
        }
        Ok(out)
    }

    /// Bring back every workload in `workloads` that `owner` scaled down for a Job for which
    /// `is_active` is false: set the recorded replica count, then remove the record.
    /// Returns what was scaled back (`Kind/name=replicas`).
    pub async fn scale_up(
        &self,
        workloads: &[WorkloadRef],
        owner: &str,
        is_active: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let mut restored = Vec::new();
        for w in workloads {
            let Some(current) = self.get(w).await? else {
                continue;
            };
            if current.quiesced_by() != Some(owner) {
                continue;
            }
            if current.quiesce_job().is_some_and(&is_active) {
                continue;
            }
            let Some(replicas) = current.original_replicas() else {
                tracing::warn!(workload = %current.display(), "scale-down record without a replica count; leaving replicas as they are");
                self.clear(w).await?;
                continue;
            };
            self.scale(w, replicas).await?;
            self.clear(w).await?;
            restored.push(format!("{}={replicas}", current.display()));
        }
        Ok(restored)
    }

    async fn clear(&self, w: &WorkloadRef) -> Result<()> {
        self.patch_annotations(
            w,
            json!({
                annotations::ORIGINAL_REPLICAS: null,
                annotations::QUIESCED_BY: null,
                annotations::QUIESCE_JOB: null,
            }),
        )
        .await
    }
}

/// Result of [`Scaler::scale_down`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDown {
    /// Every workload is recorded and at zero; these were scaled now.
    Done {
        /// `Kind/name` of the workloads scaled in this call.
        scaled: Vec<String>,
    },
    /// A workload is held by another owner (e.g. a restore); try again later.
    HeldBy {
        /// `Kind/name`.
        workload: String,
        /// Its `arca.dev/quiesced-by`.
        owner: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_as_query_strings() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "orthanc"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(selector_string(&s), "app=orthanc,tier in (web,api),!canary");
    }

    #[test]
    fn workload_records() {
        let w = Workload {
            reference: WorkloadRef {
                kind: "Deployment".into(),
                name: "orthanc".into(),
            },
            replicas: 0,
            selector: None,
            annotations: BTreeMap::from([
                (annotations::ORIGINAL_REPLICAS.to_string(), "3".to_string()),
                (
                    annotations::QUIESCED_BY.to_string(),
                    "BackupPolicy/p".to_string(),
                ),
                (annotations::QUIESCE_JOB.to_string(), "p-1".to_string()),
            ]),
        };
        assert_eq!(w.original_replicas(), Some(3));
        assert_eq!(w.quiesced_by(), Some("BackupPolicy/p"));
        assert_eq!(w.quiesce_job(), Some("p-1"));
        assert_eq!(w.display(), "Deployment/orthanc");
        assert_eq!(owner_tag("BackupPolicy", "p"), "BackupPolicy/p");
    }
}
