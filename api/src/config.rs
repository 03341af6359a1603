//! The compose config file (`arca.yaml`): `policies: [ {name: ..., <PolicySpec fields>} ]`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::PolicySpec;

/// The whole `arca.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings of `arca daemon` (compose sidecar mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonSettings>,
    /// The policies, each with a unique name.
    pub policies: Vec<NamedPolicy>,
}

/// Settings of `arca daemon`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSettings {
    /// Where run logs and schedule state are kept (default `/var/lib/arca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// HTTP listen address for the status page, health and metrics (default `0.0.0.0:9180`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Notifications: a JSON POST on failure and on RPO breach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// Docker API endpoint for cold backups (default `DOCKER_HOST` or the local socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

/// A webhook receiver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// URL receiving the JSON POST.
    pub url: String,
    /// Which events: `failure`, `rpoBreach`, `success` (default: failure and rpoBreach).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// File holding a bearer token sent as `Authorization: Bearer ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// A policy entry: its name beside the same fields as a `BackupPolicy` spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedPolicy {
    /// Name ([a-z0-9-], unique); the folder name in every destination.
    pub name: String,
    /// Everything else.
    pub spec: PolicySpec,
}

/// A config file that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigParseError(String);

impl ConfigFile {
    /// Parse YAML (or JSON), rejecting unknown fields.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigParseError> {
        serde_yaml::from_str(text).map_err(|e| ConfigParseError(e.to_string()))
    }

    /// Serialize as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for NamedPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // NB: serde's `flatten` disables `deny_unknown_fields`, so split off `name` by hand
        // and let PolicySpec reject anything it does not know.
        let mut map = serde_yaml::Mapping::deserialize(deserializer)?;
        let name = match map.remove("name") {
            Some(serde_yaml::Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("policy `name` must be a string")),
            None => return Err(D::Error::custom("a policy has no `name`")),
        };
        let spec: PolicySpec = serde_yaml::from_value(serde_yaml::Value::Mapping(map))
            .map_err(|e| D::Error::custom(format!("policy {name:?}: {e}")))?;
        Ok(Self { name, spec })
    }
}

impl Serialize for NamedPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut value = serde_yaml::to_value(&self.spec).map_err(S::Error::custom)?;
        let mut map = serde_yaml::Mapping::new();
        map.insert("name".into(), self.name.clone().into());
        if let serde_yaml::Value::Mapping(rest) = &mut value {
            for (k, v) in std::mem::take(rest) {
                map.insert(k, v);
            }
        }
        serde_yaml::Value::Mapping(map).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
policies:
  - name: orthanc
    schedule: "15 3 * * 1-5"
    timeZone: Europe/Zurich
    rpo: 26h
    encryption:
      ageRecipients: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
      ageIdentityFile: /run/secrets/age-identity
    components:
      - name: globals
        postgresGlobals: {host: db, port: 5432, user: postgres, passwordFile: /run/secrets/pg}
      - name: index
        postgres: {host: db, port: 5432, user: postgres, passwordFile: /run/secrets/pg, database: orthanc}
      - name: elexis
        mysql: {host: elexisdb, port: 3306, user: root, passwordFile: /run/secrets/my, database: elexisoob}
      - name: catalog
        sqlite: {path: /sources/orthanc/index}
      - name: storage
        files: {path: /sources/orthanc/storage, exclude: ["*.tmp"]}
    destinations:
      - name: local
        path: /backup
        retention: {keepLast: 3}
      - name: offsite
        s3: {endpoint: "https://s3.example.org", region: eu-central-1, bucket: clinic,
             prefix: arca, pathStyle: true,
             accessKeyIdFile: /run/secrets/s3-id, secretAccessKeyFile: /run/secrets/s3-key}
        retention: {keepDaily: 7, keepWeekly: 4, keepMonthly: 12, keepYearly: 10}
"#;

    #[test]
    fn parses_the_design_example() {
        let cfg = ConfigFile::from_yaml(EXAMPLE).expect("parses");
        let p = &cfg.policies[0];
        assert_eq!(p.name, "orthanc");
        assert_eq!(p.spec.components.len(), 5);
        assert_eq!(p.spec.rpo.map(|d| d.as_secs()), Some(26 * 3600));
        assert_eq!(
            p.spec.components[1]
                .postgres
                .as_ref()
                .map(|s| s.database.as_str()),
            Some("orthanc")
        );
        assert_eq!(
            p.spec.destinations[1].s3.as_ref().map(|s| s.path_style),
            Some(true)
        );
        assert_eq!(
            p.spec.destinations[1]
                .retention
                .as_ref()
                .and_then(|r| r.keep_yearly),
            Some(10)
        );
    }

    #[test]
    fn round_trips() {
        let cfg = ConfigFile::from_yaml(EXAMPLE).expect("parses");
        let again = ConfigFile::from_yaml(&cfg.to_yaml()).expect("re-parses");
        assert_eq!(cfg, again);
    }

    #[test]
    fn rejects_unknown_fields_at_every_level() {
        for bad in [
            "policies: []\nextra: 1\n",
            "policies: [{name: a, components: [], destinations: [], colour: red}]\n",
            "policies: [{name: a, components: [{name: c, files: {path: /x, recurse: true}}], destinations: []}]\n",
            "policies: [{name: a, components: [], destinations: [{name: d, path: /b, retention: {keepAll: 1}}]}]\n",
        ] {
            let err = ConfigFile::from_yaml(bad).expect_err(bad);
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
    }

    #[test]
    fn names_the_policy_without_name() {
        let err = ConfigFile::from_yaml("policies: [{components: [], destinations: []}]")
            .expect_err("no name");
        assert!(err.to_string().contains("no `name`"), "{err}");
    }
}
