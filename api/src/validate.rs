//! Structural validation of a policy: names, one source per component, bindings that fit
//! the platform, cron and time zone. Every problem is reported with its field path.

use std::collections::HashSet;

use crate::policy::{Component, Destination, PolicySpec, SourceRef};
use crate::schedule::{parse_time_zone, Schedule};

/// Which bindings a policy must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// compose / plain binary: `path` and `*File` bindings.
    Files,
    /// Kubernetes: `claimName` and `*SecretRef` bindings.
    Kubernetes,
}

/// One problem, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `components[2].files.path`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Collects validation errors for one policy.
#[derive(Debug)]
pub struct Validator {
    platform: Platform,
    errors: Vec<ValidationError>,
}

/// Is `name` a valid policy, component or destination name?
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl Validator {
    /// Validate `spec` (named `name`) for `platform`; returns every problem found.
    pub fn validate(
        name: &str,
        spec: &PolicySpec,
        platform: Platform,
    ) -> Result<(), Vec<ValidationError>> {
        let mut v = Self {
            platform,
            errors: Vec::new(),
        };
        v.check(name, spec);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(v.errors)
        }
    }

    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn name(&mut self, field: &str, name: &str) {
        if !is_valid_name(name) {
            self.err(
                field,
                format!(
                    "{name:?} is not a valid name: use 1-63 lower-case letters, digits and '-'"
                ),
            );
        }
    }

    fn check(&mut self, name: &str, spec: &PolicySpec) {
        self.name("name", name);
        if let Err(e) = parse_time_zone(spec.time_zone.as_deref()) {
            self.err("timeZone", e.to_string());
        }
        if let Some(expr) = &spec.schedule {
            if let Err(e) = Schedule::parse(expr, None) {
                self.err("schedule", e.to_string());
            }
        }
        if let Some(verify) = &spec.verify {
            if let Err(e) = Schedule::parse(&verify.schedule, None) {
                self.err("verify.schedule", e.to_string());
            }
        }
        if let Some(rpo) = spec.rpo {
            if rpo.as_secs() == 0 {
                self.err("rpo", "must be longer than zero, e.g. 26h");
            }
        }
        self.encryption(spec);
        self.quiesce(spec);

        if spec.components.is_empty() {
            self.err("components", "a policy needs at least one component");
        }
        let mut seen = HashSet::new();
        for (i, c) in spec.components.iter().enumerate() {
            let field = format!("components[{i}]");
            self.name(&format!("{field}.name"), &c.name);
            if !seen.insert(c.name.as_str()) {
                self.err(
                    format!("{field}.name"),
                    format!(
                        "duplicate component name {:?}: names must be unique",
                        c.name
                    ),
                );
            }
            self.component(&field, c);
        }

        if spec.destinations.is_empty() {
            self.err("destinations", "a policy needs at least one destination");
        }
        let mut seen = HashSet::new();
        for (i, d) in spec.destinations.iter().enumerate() {
            let field = format!("destinations[{i}]");
            self.name(&format!("{field}.name"), &d.name);
            if !seen.insert(d.name.as_str()) {
                self.err(
                    format!("{field}.name"),
                    format!(
                        "duplicate destination name {:?}: names must be unique",
                        d.name
                    ),
                );
            }
            self.destination(&field, d);
        }
    }

    fn encryption(&mut self, spec: &PolicySpec) {
        let Some(enc) = &spec.encryption else { return };
        if enc.age_recipients.is_empty() {
            self.err(
                "encryption.ageRecipients",
                "list at least one age recipient (create one with `arca keygen`)",
            );
        }
        for (i, r) in enc.age_recipients.iter().enumerate() {
            let r = r.trim();
            let ok = r.starts_with("age1")
                && r.len() == 62
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                self.err(
                    format!("encryption.ageRecipients[{i}]"),
                    "not an age X25519 recipient (age1..., 62 characters): use the public key printed by `arca keygen`",
                );
            }
        }
        match self.platform {
            Platform::Files if enc.age_identity_secret_ref.is_some() => self.err(
                "encryption.ageIdentitySecretRef",
                "secret references work in Kubernetes only: use ageIdentityFile",
            ),
            Platform::Kubernetes if enc.age_identity_file.is_some() => self.err(
                "encryption.ageIdentityFile",
                "files work in compose only: use ageIdentitySecretRef",
            ),
            _ => {}
        }
    }

    fn quiesce(&mut self, spec: &PolicySpec) {
        let Some(q) = &spec.quiesce else { return };
        for (i, w) in q.scale_down.iter().enumerate() {
            if w.kind != "Deployment" && w.kind != "StatefulSet" {
                self.err(
                    format!("quiesce.scaleDown[{i}].kind"),
                    format!(
                        "{:?} cannot be scaled down: use Deployment or StatefulSet",
                        w.kind
                    ),
                );
            }
            if w.name.is_empty() {
                self.err(format!("quiesce.scaleDown[{i}].name"), "name the workload");
            }
        }
        match self.platform {
            Platform::Files if !q.scale_down.is_empty() => self.err(
                "quiesce.scaleDown",
                "scaling workloads works in Kubernetes only: use stopContainers in compose",
            ),
            Platform::Kubernetes if q.stop_containers => self.err(
                "quiesce.stopContainers",
                "stopping containers works in compose only: use scaleDown in Kubernetes",
            ),
            _ => {}
        }
    }

    fn secret(&mut self, field: &str, file: bool, secret_ref: bool, what: &str) {
        match self.platform {
            Platform::Files if secret_ref => self.err(
                format!("{field}.{what}SecretRef"),
                format!("secret references work in Kubernetes only: use {what}File"),
            ),
            Platform::Kubernetes if file => self.err(
                format!("{field}.{what}File"),
                format!("files work in compose only: use {what}SecretRef"),
            ),
            _ => {}
        }
    }

    fn volume(&mut self, field: &str, path: Option<&str>, claim: Option<&str>, sub: bool) {
        match self.platform {
            Platform::Files => {
                if claim.is_some() || sub {
                    self.err(
                        format!("{field}.claimName"),
                        "claims work in Kubernetes only: use path",
                    );
                }
                match path {
                    None => self.err(format!("{field}.path"), "set the path to capture"),
                    Some(p) if !p.starts_with('/') => self.err(
                        format!("{field}.path"),
                        format!("{p:?} is relative: use an absolute path"),
                    ),
                    _ => {}
                }
            }
            Platform::Kubernetes => {
                if path.is_some() {
                    self.err(
                        format!("{field}.path"),
                        "paths work in compose only: use claimName (and subPath)",
                    );
                }
                if claim.is_none_or(str::is_empty) {
                    self.err(
                        format!("{field}.claimName"),
                        "name the PersistentVolumeClaim",
                    );
                }
            }
        }
    }

    fn component(&mut self, field: &str, c: &Component) {
        let sources = c.sources();
        if sources.len() != 1 {
            self.err(
                field.to_string(),
                format!(
                    "component {:?} must set exactly one of postgresGlobals, postgres, mysql, sqlite, files (found {})",
                    c.name,
                    sources.len()
                ),
            );
            return;
        }
        match sources[0] {
            SourceRef::PostgresGlobals(s) => {
                let f = format!("{field}.postgresGlobals");
                self.host(&f, &s.host, &s.user);
                self.secret(
                    &f,
                    s.password_file.is_some(),
                    s.password_secret_ref.is_some(),
                    "password",
                );
                self.ssl_mode(&f, s.ssl_mode.as_deref());
            }
            SourceRef::Postgres(s) => {
                let f = format!("{field}.postgres");
                self.host(&f, &s.host, &s.user);
                self.secret(
                    &f,
                    s.password_file.is_some(),
                    s.password_secret_ref.is_some(),
                    "password",
                );
                self.ssl_mode(&f, s.ssl_mode.as_deref());
                if s.database.is_empty() {
                    self.err(format!("{f}.database"), "name the database to dump");
                }
            }
            SourceRef::Mysql(s) => {
                let f = format!("{field}.mysql");
                self.host(&f, &s.host, &s.user);
                self.secret(
                    &f,
                    s.password_file.is_some(),
                    s.password_secret_ref.is_some(),
                    "password",
                );
                if s.database.is_empty() {
                    self.err(format!("{f}.database"), "name the database to dump");
                }
            }
            SourceRef::Sqlite(s) => {
                let f = format!("{field}.sqlite");
                self.volume(&f, s.path.as_deref(), s.claim_name.as_deref(), false);
                if self.platform == Platform::Kubernetes
                    && s.sub_path.as_deref().is_none_or(str::is_empty)
                {
                    self.err(
                        format!("{f}.subPath"),
                        "give the database file's path inside the claim",
                    );
                }
            }
            SourceRef::Files(s) => {
                let f = format!("{field}.files");
                let sub = self.platform == Platform::Files && s.sub_path.is_some();
                self.volume(&f, s.path.as_deref(), s.claim_name.as_deref(), sub);
                for (i, g) in s.exclude.iter().enumerate() {
                    if g.is_empty() {
                        self.err(format!("{f}.exclude[{i}]"), "empty pattern");
                    }
                }
            }
        }
    }

    fn host(&mut self, field: &str, host: &str, user: &str) {
        if host.is_empty() {
            self.err(format!("{field}.host"), "set the server's host name");
        }
        if user.is_empty() {
            self.err(format!("{field}.user"), "set the login user");
        }
    }

    fn ssl_mode(&mut self, field: &str, mode: Option<&str>) {
        if let Some(m) = mode {
            if ![
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ]
            .contains(&m)
            {
                self.err(
                    format!("{field}.sslMode"),
                    format!("{m:?} is not a libpq sslmode: use disable, prefer, require, verify-ca or verify-full"),
                );
            }
        }
    }

    fn destination(&mut self, field: &str, d: &Destination) {
        let kinds = d.kinds();
        if kinds.len() != 1 {
            self.err(
                field.to_string(),
                format!(
                    "destination {:?} must set exactly one of path, claimName, s3 (found {})",
                    d.name,
                    kinds.len()
                ),
            );
            return;
        }
        match self.platform {
            Platform::Files if d.claim_name.is_some() => self.err(
                format!("{field}.claimName"),
                "claims work in Kubernetes only: use path",
            ),
            Platform::Kubernetes if d.path.is_some() => self.err(
                format!("{field}.path"),
                "paths work in compose only: use claimName",
            ),
            _ => {}
        }
        if let Some(p) = &d.path {
            if !p.starts_with('/') {
                self.err(
                    format!("{field}.path"),
                    format!("{p:?} is relative: use an absolute path"),
                );
            }
        }
        if let Some(s3) = &d.s3 {
            let f = format!("{field}.s3");
            if s3.bucket.is_empty() {
                self.err(format!("{f}.bucket"), "name the bucket");
            }
            if let Some(e) = &s3.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    self.err(
                        format!("{f}.endpoint"),
                        format!("{e:?} is not a URL: use https://host[:port]"),
                    );
                }
            }
            if s3.max_parts_in_flight == Some(0) {
                self.err(format!("{f}.maxPartsInFlight"), "must be at least 1");
            }
            let files = s3.access_key_id_file.is_some() || s3.secret_access_key_file.is_some();
            let refs =
                s3.access_key_id_secret_ref.is_some() || s3.secret_access_key_secret_ref.is_some();
            self.secret(&f, files, false, "accessKeyId");
            self.secret(&f, false, refs, "accessKeyId");
            if s3.access_key_id_file.is_some() != s3.secret_access_key_file.is_some() {
                self.err(
                    f.clone(),
                    "set both accessKeyIdFile and secretAccessKeyFile, or neither",
                );
            }
            if s3.access_key_id_secret_ref.is_some() != s3.secret_access_key_secret_ref.is_some() {
                self.err(
                    f,
                    "set both accessKeyIdSecretRef and secretAccessKeySecretRef, or neither",
                );
            }
        }
        if let Some(r) = &d.retention {
            let f = format!("{field}.retention");
            for (name, v) in [
                ("keepLast", r.keep_last),
                ("keepHourly", r.keep_hourly),
                ("keepDaily", r.keep_daily),
                ("keepWeekly", r.keep_weekly),
                ("keepMonthly", r.keep_monthly),
                ("keepYearly", r.keep_yearly),
            ] {
                if v == Some(0) {
                    self.err(
                        format!("{f}.{name}"),
                        "must be at least 1 (leave it out to not use the rule)",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn check(yaml: &str, platform: Platform) -> Vec<String> {
        let cfg = ConfigFile::from_yaml(yaml).expect("parses");
        let p = &cfg.policies[0];
        match Validator::validate(&p.name, &p.spec, platform) {
            Ok(()) => vec![],
            Err(errs) => errs.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_a_good_compose_policy() {
        let errs = check(
            "policies: [{name: demo, schedule: '0 2 * * *', components: [{name: db, sqlite: {path: /data/db.sqlite}}, {name: docs, files: {path: /data/docs}}], destinations: [{name: local, path: /backup}]}]",
            Platform::Files,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let errs = check(
            "policies: [{name: Bad_Name, schedule: '0 2 * *', timeZone: Nowhere/City, components: [{name: a, files: {path: rel}}, {name: a, sqlite: {path: /x}, files: {path: /y}}], destinations: [{name: d, path: /b, s3: {bucket: b}}]}]",
            Platform::Files,
        );
        let joined = errs.join("\n");
        for needle in [
            "name: \"Bad_Name\" is not a valid name",
            "schedule: invalid cron expression",
            "timeZone: unknown time zone",
            "components[0].files.path: \"rel\" is relative",
            "components[1].name: duplicate component name",
            "components[1]: component \"a\" must set exactly one",
            "destinations[0]: destination \"d\" must set exactly one",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
    }

    #[test]
    fn bindings_must_fit_the_platform() {
        let yaml = "policies: [{name: p, components: [{name: idx, postgres: {host: db, user: u, database: d, passwordFile: /s}}, {name: f, files: {path: /data}}], destinations: [{name: d, path: /b}]}]";
        assert!(check(yaml, Platform::Files).is_empty());
        let errs = check(yaml, Platform::Kubernetes).join("\n");
        assert!(
            errs.contains("passwordFile: files work in compose only"),
            "{errs}"
        );
        assert!(
            errs.contains("files.path: paths work in compose only"),
            "{errs}"
        );
        assert!(errs.contains("destinations[0].path"), "{errs}");
    }

    #[test]
    fn recipients_are_checked() {
        let errs = check(
            "policies: [{name: p, encryption: {ageRecipients: [ssh-ed25519 AAAA]}, components: [{name: f, files: {path: /d}}], destinations: [{name: d, path: /b}]}]",
            Platform::Files,
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("not an age X25519 recipient")),
            "{errs:?}"
        );
    }
}
