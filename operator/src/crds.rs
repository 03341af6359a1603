//! The CRD manifests, generated from the types in `arca_api::crd` and committed under
//! `crds/`. `crdgen` writes them; a test fails when the committed files drift.

use arca_api::crd::{BackupPolicy, RestoreRequest};
use kube::CustomResourceExt;

/// First lines of every generated file.
const HEADER: &str =
    "# Generated from arca-api by `cargo run -p arca-operator --bin crdgen`. Do not edit.\n";

/// File name and YAML of every CRD.
pub fn manifests() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "backuppolicy.yaml",
            format!("{HEADER}{}", serde_yaml::to_string(&BackupPolicy::crd())?),
        ),
        (
            "restorerequest.yaml",
            format!("{HEADER}{}", serde_yaml::to_string(&RestoreRequest::crd())?),
        ),
    ])
}

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
        for crd in [BackupPolicy::crd(), RestoreRequest::crd()] {
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
        let s = schema(&BackupPolicy::crd());
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
        let s = schema(&BackupPolicy::crd());
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

    fn request(spec: Value) -> Value {
        json!({"apiVersion": "arca.dev/v1alpha1", "kind": "RestoreRequest",
               "metadata": {"name": "r"}, "spec": spec})
    }

    #[test]
    fn restore_requests_are_immutable() {
        let s = schema(&RestoreRequest::crd());
        let old = request(json!({"policyRef": {"name": "p"}}));
        assert!(violations(&s, &old, Some(&old)).is_empty());
        let changed = request(json!({"policyRef": {"name": "p"}, "force": true}));
        let v = violations(&s, &changed, Some(&old));
        assert!(v.iter().any(|m| m.contains("cannot be changed")), "{v:?}");
    }

    #[test]
    fn restore_request_rules() {
        let s = schema(&RestoreRequest::crd());
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
        for crd in [BackupPolicy::crd(), RestoreRequest::crd()] {
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
        let bp = BackupPolicy::crd();
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
                "Next",
                "Age"
            ]
        );
    }

    #[test]
    fn fields_carry_their_documentation() {
        let s = schema(&BackupPolicy::crd());
        let schedule = &s["properties"]["spec"]["properties"]["schedule"];
        assert!(
            schedule["description"].as_str().unwrap().contains("cron"),
            "{schedule}"
        );
        let rr = schema(&RestoreRequest::crd());
        let safety = &rr["properties"]["spec"]["properties"]["safetyBackup"];
        assert_eq!(safety["default"], json!(true));
        assert!(safety["description"]
            .as_str()
            .unwrap()
            .contains("safety snapshot"));
    }
}
