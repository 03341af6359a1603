//! Where a Job must run. A ReadWriteOnce volume is attached to one node at a time, so a
//! Job that mounts a ReadWriteOnce claim already mounted by a running pod must run on that
//! pod's node. Pure: decides from the claims and the pods the reconciler listed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::jobs::Placement;

/// True when `pvc` can be mounted on one node only.
pub fn is_single_node(pvc: &PersistentVolumeClaim) -> bool {
    let modes = pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    let shared = modes
        .iter()
        .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany");
    !shared
        && modes
            .iter()
            .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod")
}

/// Does `selector` match `labels`? (matchLabels and matchExpressions.)
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    // An empty selector matches nothing here: never treat every pod as quiesced.
    selector
        .match_labels
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|m| !m.is_empty())
}

/// The claims `pod` mounts.
fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// Decide the placement of a Job that mounts the single-node claims `rwo_claims`, given
/// the namespace's `pods`. Pods matched by `stopping` (the selectors of workloads scaled
/// down before the Job runs) are ignored: they will be gone.
pub fn placement(
    rwo_claims: &[String],
    pods: &[Pod],
    stopping: &[LabelSelector],
) -> Result<Placement, String> {
    let mut chosen: Option<(&str, &str, &Pod)> = None;
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if stopping.iter().any(|s| selector_matches(s, &labels)) {
            continue;
        }
        for claim in claims_of(pod) {
            if !rwo_claims.iter().any(|c| c == claim) {
                continue;
            }
            match chosen {
                None => chosen = Some((node, claim, pod)),
                Some((n, c, _)) if n != node => {
                    return Err(format!(
                        "ReadWriteOnce claims {c:?} and {claim:?} are mounted on different nodes ({n} and {node}): one Job cannot mount both; use ReadWriteMany claims or scale one workload down during the backup"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(match chosen {
        Some((node, _, pod)) => Placement {
            node: Some(node.to_string()),
            tolerations: pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default(),
        },
        None => Placement::default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, claims: &[&str], labels: serde_json::Value, phase: &str) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [], "volumes": volumes,
                     "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn pvc(modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {"accessModes": modes}}))
            .unwrap()
    }

    #[test]
    fn access_modes() {
        assert!(is_single_node(&pvc(&["ReadWriteOnce"])));
        assert!(is_single_node(&pvc(&["ReadWriteOncePod"])));
        assert!(!is_single_node(&pvc(&["ReadWriteMany"])));
        assert!(!is_single_node(&pvc(&["ReadWriteOnce", "ReadOnlyMany"])));
        assert!(!is_single_node(&pvc(&[])));
    }

    #[test]
    fn pins_to_the_node_of_the_running_pod() {
        let pods = vec![
            pod("other", "node-a", &["elsewhere"], json!({}), "Running"),
            pod(
                "orthanc-1",
                "node-b",
                &["orthanc-data"],
                json!({"app": "orthanc"}),
                "Running",
            ),
        ];
        let p = placement(&["orthanc-data".into()], &pods, &[]).unwrap();
        assert_eq!(p.node.as_deref(), Some("node-b"));
        assert_eq!(p.tolerations[0].key.as_deref(), Some("dedicated"));
    }

    #[test]
    fn no_pod_no_pin() {
        let pods = vec![pod(
            "done",
            "node-b",
            &["orthanc-data"],
            json!({}),
            "Succeeded",
        )];
        assert_eq!(
            placement(&["orthanc-data".into()], &pods, &[]).unwrap(),
            Placement::default()
        );
    }

    #[test]
    fn pods_of_workloads_being_stopped_do_not_count() {
        let pods = vec![pod(
            "orthanc-1",
            "node-b",
            &["orthanc-data"],
            json!({"app": "orthanc"}),
            "Running",
        )];
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "orthanc"}})).unwrap();
        assert_eq!(
            placement(&["orthanc-data".into()], &pods, &[sel]).unwrap(),
            Placement::default()
        );
    }

    #[test]
    fn claims_on_two_nodes_cannot_be_served() {
        let pods = vec![
            pod("a", "node-a", &["one"], json!({}), "Running"),
            pod("b", "node-b", &["two"], json!({}), "Running"),
        ];
        let err = placement(&["one".into(), "two".into()], &pods, &[]).unwrap_err();
        assert!(err.contains("different nodes"), "{err}");
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([("app".to_string(), "x".to_string())]);
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        assert!(selector_matches(
            &sel(json!({"matchLabels": {"app": "x"}})),
            &labels
        ));
        assert!(!selector_matches(
            &sel(json!({"matchLabels": {"app": "y"}})),
            &labels
        ));
        assert!(selector_matches(
            &sel(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "z"]}]})
            ),
            &labels
        ));
        assert!(!selector_matches(
            &sel(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})),
            &labels
        ));
        assert!(!selector_matches(&sel(json!({})), &labels));
    }
}
