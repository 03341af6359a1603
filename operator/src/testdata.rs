//! Fixtures shared by the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arca_api::crd::{BackupPolicy, RestoreRequest, RestoreRequestSpec};
use arca_api::PolicySpec;
use kube::api::ObjectMeta;

/// A valid age recipient.
pub const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// The design document's Orthanc example with cluster bindings: PostgreSQL with a password
/// Secret, a SQLite index and a storage tree on one claim, a claim and an S3 destination,
/// encryption with an identity Secret, and a cold backup of the Orthanc Deployment.
pub fn full_spec() -> PolicySpec {
    serde_yaml::from_str(&format!(
        r#"
schedule: "15 3 * * 1-5"
timeZone: Europe/Zurich
rpo: 26h
encryption:
  ageRecipients: ["{RECIPIENT}"]
  ageIdentitySecretRef: {{name: age-identity, key: key.txt}}
quiesce:
  scaleDown: [{{kind: Deployment, name: orthanc}}]
components:
  - name: globals
    postgresGlobals: {{host: db, user: postgres, passwordSecretRef: {{name: pg-credentials, key: password}}}}
  - name: index
    postgres: {{host: db, user: postgres, passwordSecretRef: {{name: pg-credentials, key: password}}, database: orthanc}}
  - name: catalog
    sqlite: {{claimName: orthanc-data, subPath: db/index}}
  - name: storage
    files: {{claimName: orthanc-data, exclude: ["*.tmp"]}}
destinations:
  - name: local
    claimName: backup-disk
    retention: {{keepLast: 3}}
  - name: offsite
    s3:
      endpoint: https://s3.example.org
      bucket: clinic
      pathStyle: true
      accessKeyIdSecretRef: {{name: s3-credentials, key: id}}
      secretAccessKeySecretRef: {{name: s3-credentials, key: secret}}
"#
    ))
    .expect("fixture parses")
}

/// A small hot-backup policy: one files component on a claim, one S3 destination.
pub fn simple_spec() -> PolicySpec {
    serde_yaml::from_str(
        r#"
schedule: "0 2 * * *"
components:
  - name: docs
    files: {claimName: docs}
destinations:
  - name: offsite
    s3: {bucket: clinic, accessKeyIdSecretRef: {name: s3, key: id}, secretAccessKeySecretRef: {name: s3, key: secret}}
"#,
    )
    .expect("fixture parses")
}

/// A BackupPolicy object as the API server would return it.
pub fn policy(name: &str, spec: PolicySpec) -> BackupPolicy {
    let mut p = BackupPolicy::new(name, spec);
    p.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("clinic".into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        resource_version: Some("100".into()),
        creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-01T00:00:00Z".parse().unwrap(),
        )),
        ..Default::default()
    };
    p
}

/// A RestoreRequest object as the API server would return it.
pub fn restore_request(name: &str, spec: RestoreRequestSpec) -> RestoreRequest {
    let mut r = RestoreRequest::new(name, spec);
    r.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("clinic".into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        resource_version: Some("200".into()),
        creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-23T08:00:00Z".parse().unwrap(),
        )),
        ..Default::default()
    };
    r
}
