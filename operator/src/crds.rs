//! The CRD manifests, generated from the types in `arca_api::crd` and committed under
//! `crds/`. `crdgen` writes them; a test fails when the committed files drift.

use arca_api::crd::{BackupPolicy, RestoreRequest};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

/// First lines of every generated file.
const HEADER: &str =
    "# Generated from arca-api by `cargo run -p arca-operator --bin crdgen`. Do not edit.\n";

/// Why a CRD could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD did not survive its JSON round trip.
    #[error("cannot convert the CRD: {0}")]
    Json(#[from] serde_json::Error),
    /// The CRD could not be written as YAML.
    #[error("cannot write the CRD as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Integer formats as Kubernetes knows them. schemars writes Rust's `uint16`/`uint32`, which
/// API servers from 1.34 on answer with an "unrecognized format" warning on every apply;
/// `minimum`/`maximum` keep the range.
fn kubernetes_formats(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("integer") {
                let known = match map.get("format").and_then(Value::as_str) {
                    Some("int8" | "int16" | "uint8" | "uint16" | "int32") => Some("int32"),
                    Some(_) => Some("int64"),
                    None => None,
                };
                if map.get("format").and_then(Value::as_str) == Some("uint32")
                    && !map.contains_key("maximum")
                {
                    // Larger values would be stored, then be unreadable for the operator.
                    map.insert("maximum".into(), Value::from(u32::MAX));
                }
                if let Some(f) = known {
                    map.insert("format".into(), Value::String(f.into()));
                }
            }
            map.values_mut().for_each(kubernetes_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}

/// `crd` as written to `crds/`: the derived CRD with Kubernetes' integer formats.
fn normalized(crd: CustomResourceDefinition) -> Result<CustomResourceDefinition, CrdError> {
    let mut value = serde_json::to_value(crd)?;
    kubernetes_formats(&mut value);
    Ok(serde_json::from_value(value)?)
}

/// Rule on the root of a `BackupPolicy`: its name becomes the policy name in the Job's
/// config (`[a-z0-9-]`, at most 63) and the stem of its Job names and labels. The API
/// server already keeps names to DNS-1123 subdomains, so "no dot and at most 63" is that
/// rule. NB: no `matches()` here: `metadata.name` has no maxLength the cost estimator can
/// see, and a regex over it is estimated far over the per-rule budget.
const POLICY_NAME_RULE: &str =
    "size(self.metadata.name) <= 63 && !self.metadata.name.contains('.')";
/// The message of [`POLICY_NAME_RULE`].
const POLICY_NAME_MESSAGE: &str = "metadata.name of a BackupPolicy must be at most 63 characters without dots (lower-case letters, digits and '-'): it names the policy in snapshots, Jobs and labels";

/// The `BackupPolicy` CRD as committed.
pub fn backup_policy() -> Result<CustomResourceDefinition, CrdError> {
    let mut crd = normalized(BackupPolicy::crd())?;
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .push(serde_json::from_value(serde_json::json!({
                    "rule": POLICY_NAME_RULE,
                    "message": POLICY_NAME_MESSAGE,
                }))?);
        }
    }
    Ok(crd)
}

/// The `RestoreRequest` CRD as committed.
pub fn restore_request() -> Result<CustomResourceDefinition, CrdError> {
    normalized(RestoreRequest::crd())
}

/// File name and YAML of every CRD.
pub fn manifests() -> Result<Vec<(&'static str, String)>, CrdError> {
    Ok(vec![
        (
            "backuppolicy.yaml",
            format!("{HEADER}{}", serde_yaml::to_string(&backup_policy()?)?),
        ),
        (
            "restorerequest.yaml",
            format!("{HEADER}{}", serde_yaml::to_string(&restore_request()?)?),
        ),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "crds_schema_tests.rs"]
mod schema_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube_cel::Validator;
    use serde_json::{json, Value};

    fn crds_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
    }

    #[test]
    fn committed_crds_match_the_types() {
        for (file, yaml) in manifests().unwrap() {
            let path = crds_dir().join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == yaml,
                "crds/{file} is out of date with the types in api/src: run `cargo run -p arca-operator --bin crdgen` and commit the result"
            );
        }
    }

    fn schema(
        crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) -> Value {
        serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn cel_rules_compile() {
        for crd in [backup_policy().unwrap(), restore_request().unwrap()] {
            let compiled = kube_cel::compile_schema(&schema(&crd));
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    fn policy_object(components: Value, destinations: Value) -> Value {
        json!({"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicy",
               "metadata": {"name": "p"},
               "spec": {"components": components, "destinations": destinations}})
    }

    fn violations(crd_schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<String> {
        match Validator::new().validate(crd_schema, obj, old) {
            Ok(()) => vec![],
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_component_sets_exactly_one_source() {
        let s = schema(&backup_policy().unwrap());
        let dest = json!([{"name": "s3", "s3": {"bucket": "b"}}]);
        let ok = policy_object(
            json!([{"name": "docs", "files": {"claimName": "docs"}}]),
            dest.clone(),
        );
        assert!(violations(&s, &ok, None).is_empty());
        let two = policy_object(
            json!([{"name": "docs", "files": {"claimName": "docs"}, "sqlite": {"claimName": "db", "subPath": "x"}}]),
            dest.clone(),
        );
        let v = violations(&s, &two, None);
        assert!(
            v.iter()
                .any(|m| m.contains("exactly one of postgresGlobals")),
            "{v:?}"
        );
        let none = policy_object(json!([{"name": "docs"}]), dest);
        assert!(!violations(&s, &none, None).is_empty());
    }

    #[test]
    fn a_destination_sets_exactly_one_kind() {
        let s = schema(&backup_policy().unwrap());
        let both = policy_object(
            json!([{"name": "docs", "files": {"claimName": "docs"}}]),
            json!([{"name": "d", "claimName": "backup", "s3": {"bucket": "b"}}]),
        );
        let v = violations(&s, &both, None);
        assert!(
            v.iter().any(|m| m.contains("exactly one of claimName, s3")),
            "{v:?}"
        );
    }

    #[test]
    fn policy_names_fit_jobs_labels_and_snapshots() {
        let s = schema(&backup_policy().unwrap());
        let named = |name: &str| {
            let mut p = policy_object(
                json!([{"name": "docs", "files": {"claimName": "docs"}}]),
                json!([{"name": "s3", "s3": {"bucket": "b"}}]),
            );
            p["metadata"]["name"] = json!(name);
            p
        };
        assert!(violations(&s, &named("orthanc-prod"), None).is_empty());
        assert!(violations(&s, &named(&"a".repeat(63)), None).is_empty());
        for bad in ["orthanc.prod", &"a".repeat(64)] {
            let v = violations(&s, &named(bad), None);
            assert!(v.iter().any(|m| m.contains("without dots")), "{bad}: {v:?}");
        }
    }

    fn request(spec: Value) -> Value {
        json!({"apiVersion": "arca.dev/v1alpha1", "kind": "RestoreRequest",
               "metadata": {"name": "r"}, "spec": spec})
    }

    #[test]
    fn restore_requests_are_immutable() {
        let s = schema(&restore_request().unwrap());
        let old = request(json!({"policyRef": {"name": "p"}}));
        assert!(violations(&s, &old, Some(&old)).is_empty());
        let changed = request(json!({"policyRef": {"name": "p"}, "force": true}));
        let v = violations(&s, &changed, Some(&old));
        assert!(v.iter().any(|m| m.contains("cannot be changed")), "{v:?}");
    }

    #[test]
    fn restore_request_rules() {
        let s = schema(&restore_request().unwrap());
        let both = request(
            json!({"policyRef": {"name": "p"}, "snapshot": "20261123T031500Z",
                                  "before": "2026-11-20T00:00:00Z"}),
        );
        assert!(violations(&s, &both, None)
            .iter()
            .any(|m| m.contains("not both")));
        let latest_before = request(json!({"policyRef": {"name": "p"}, "snapshot": "latest",
                                           "before": "2026-11-20T00:00:00Z"}));
        assert!(violations(&s, &latest_before, None).is_empty());
        let to_db = request(json!({"policyRef": {"name": "p"}, "toDatabase": "copy",
                                   "components": ["a", "b"]}));
        assert!(violations(&s, &to_db, None)
            .iter()
            .any(|m| m.contains("toDatabase")));
        let ok =
            request(json!({"policyRef": {"name": "p"}, "toDatabase": "copy", "components": ["a"]}));
        assert!(violations(&s, &ok, None).is_empty());
    }

    #[test]
    fn crds_are_namespaced_with_status_and_columns() {
        for crd in [backup_policy().unwrap(), restore_request().unwrap()] {
            assert_eq!(crd.spec.scope, "Namespaced");
            let v = &crd.spec.versions[0];
            assert!(v.subresources.as_ref().unwrap().status.is_some());
            let columns: Vec<&str> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            assert!(columns.contains(&"Age"), "{columns:?}");
        }
        let bp = backup_policy().unwrap();
        let columns: Vec<String> = bp.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            [
                "Schedule",
                "Status",
                "Last Success",
                "Snapshot",
                "Within RPO",
                "Verified",
                "Next",
                "Age"
            ]
        );
    }

    #[test]
    fn fields_carry_their_documentation() {
        let s = schema(&backup_policy().unwrap());
        let schedule = &s["properties"]["spec"]["properties"]["schedule"];
        assert!(
            schedule["description"].as_str().unwrap().contains("cron"),
            "{schedule}"
        );
        let rr = schema(&restore_request().unwrap());
        let safety = &rr["properties"]["spec"]["properties"]["safetyBackup"];
        assert_eq!(safety["default"], json!(true));
        assert!(safety["description"]
            .as_str()
            .unwrap()
            .contains("safety snapshot"));
    }
}
