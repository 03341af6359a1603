//! Translate a policy's cluster bindings into the file bindings the `arca` binary reads,
//! together with the volumes and mounts that make those files exist inside the Job.
//!
//! - `files`/`sqlite` `claimName` (+ `subPath`) → the claim mounted at
//!   `/sources/<component>` (read-only for backups), `path` inside it;
//! - a destination's `claimName` → mounted read-write at `/destinations/<destination>`;
//! - every `*SecretRef` → the Secret mounted at `/run/secrets/arca/<secret>/` with only
//!   the keys used (mode 0400), and the `*File` field pointing at `<key>`.
//!
//! Pure: no client, no clock. The rendered spec holds paths only, never secret values.

use std::collections::BTreeSet;

use arca_api::crd::ClaimTarget;
use arca_api::{Component, Destination, PolicySpec, SecretKeyRef};
use k8s_openapi::api::core::v1::{
    KeyToPath, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};

use crate::constants::{paths, SECRET_FILE_MODE};

/// What the Job will do, which decides what is mounted writable.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Mode {
    /// `arca backup`: sources read-only, destinations writable, no age identity.
    #[default]
    Backup,
    /// `arca restore`: targets and destinations writable, the age identity mounted.
    Restore {
        /// Components restored (empty: all); only their sources are mounted writable.
        components: Vec<String>,
        /// Restore into this claim instead of in place.
        to_claim: Option<ClaimTarget>,
    },
    /// `arca verify`: the age identity and the database credentials (a deep verify
    /// restores into scratch databases on the same servers) mounted, destinations
    /// writable (verification records are written beside the snapshots), and no source
    /// claim at all: a verification never touches live data. The config is the restore
    /// config (same paths).
    Verify,
}

/// The result of [`render`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The policy with file bindings only (what goes into the Job's config file).
    pub spec: PolicySpec,
    /// Pod volumes (claims and secrets).
    pub volumes: Vec<Volume>,
    /// Container mounts.
    pub mounts: Vec<VolumeMount>,
    /// Every claim the Job mounts, in first-use order.
    pub claims: Vec<String>,
    /// Every Secret the Job mounts, in first-use order.
    pub secrets: Vec<String>,
    /// Every secret key the Job reads.
    pub secret_keys: Vec<SecretKeyRef>,
    /// `--to-path` for a restore into `toClaim`.
    pub to_path: Option<String>,
}

#[derive(Default)]
struct Builder {
    /// (claim, writable) per claim volume.
    claims: Vec<(String, bool)>,
    /// (secret, keys) per secret volume.
    secrets: Vec<(String, BTreeSet<String>)>,
    secret_keys: Vec<SecretKeyRef>,
    mounts: Vec<VolumeMount>,
}

impl Builder {
    fn claim_volume(&mut self, claim: &str, writable: bool) -> String {
        let index = match self.claims.iter().position(|(c, _)| c == claim) {
            Some(i) => {
                self.claims[i].1 |= writable;
                i
            }
            None => {
                self.claims.push((claim.to_string(), writable));
                self.claims.len() - 1
            }
        };
        format!("claim-{index}")
    }

    fn mount_claim(&mut self, claim: &str, at: String, writable: bool) {
        let volume = self.claim_volume(claim, writable);
        self.mounts.push(VolumeMount {
            name: volume,
            mount_path: at,
            read_only: Some(!writable),
            ..Default::default()
        });
    }

    /// Mount `r`'s Secret (once per Secret) and return the file path of its key.
    fn secret_file(&mut self, r: &SecretKeyRef) -> String {
        match self.secrets.iter_mut().find(|(s, _)| *s == r.name) {
            Some((_, keys)) => {
                keys.insert(r.key.clone());
            }
            None => {
                self.secrets
                    .push((r.name.clone(), BTreeSet::from([r.key.clone()])));
            }
        }
        if !self.secret_keys.contains(r) {
            self.secret_keys.push(r.clone());
        }
        secret_path(r)
    }

    fn finish(mut self, spec: PolicySpec, to_path: Option<String>) -> Rendered {
        let mut volumes = Vec::new();
        for (i, (claim, writable)) in self.claims.iter().enumerate() {
            volumes.push(Volume {
                name: format!("claim-{i}"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(!writable),
                }),
                ..Default::default()
            });
        }
        for (i, (secret, keys)) in self.secrets.iter().enumerate() {
            let volume = format!("secret-{i}");
            volumes.push(Volume {
                name: volume.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    default_mode: Some(SECRET_FILE_MODE),
                    // NB: optional, so a key missing from an existing Secret leaves its file
                    // out instead of holding the pod in ContainerCreating until the Job's
                    // deadline: `arca` then fails at once naming the file, and the operator
                    // turns that into "Secret x has no key y" (see `outcome::secret_hint`).
                    // The Secret itself is checked before the Job is created; the operator
                    // reads Secret metadata only, never values or key lists.
                    optional: Some(true),
                    items: Some(
                        keys.iter()
                            .map(|k| KeyToPath {
                                key: k.clone(),
                                path: k.clone(),
                                mode: Some(SECRET_FILE_MODE),
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            });
            self.mounts.push(VolumeMount {
                name: volume,
                mount_path: format!("{}/{secret}", paths::SECRETS),
                read_only: Some(true),
                ..Default::default()
            });
        }
        Rendered {
            spec,
            volumes,
            mounts: self.mounts,
            claims: self.claims.into_iter().map(|(c, _)| c).collect(),
            secrets: self.secrets.into_iter().map(|(s, _)| s).collect(),
            secret_keys: self.secret_keys,
            to_path,
        }
    }
}

/// Where the file of secret key `r` appears inside the Job.
pub fn secret_path(r: &SecretKeyRef) -> String {
    format!("{}/{}/{}", paths::SECRETS, r.name, r.key)
}

/// Where component `name`'s claim is mounted.
pub fn source_dir(component: &str) -> String {
    format!("{}/{component}", paths::SOURCES)
}

/// Where destination `name`'s claim is mounted.
pub fn destination_dir(destination: &str) -> String {
    format!("{}/{destination}", paths::DESTINATIONS)
}

/// `base` joined with a relative `sub` path (leading/trailing slashes ignored).
fn join(base: &str, sub: Option<&str>) -> String {
    match sub.map(|s| s.trim_matches('/')).filter(|s| !s.is_empty()) {
        Some(s) => format!("{base}/{s}"),
        None => base.to_string(),
    }
}

/// Render `spec` for a Job in `mode`. Expects a spec that passed validation; fields that
/// are missing are left missing (the `arca` binary then reports them).
pub fn render(spec: &PolicySpec, mode: &Mode) -> Rendered {
    let mut b = Builder::default();
    let mut out = spec.clone();
    let (restore, selected) = match mode {
        Mode::Backup | Mode::Verify => (false, Vec::new()),
        Mode::Restore { components, .. } => (true, components.clone()),
    };
    let verify = matches!(mode, Mode::Verify);
    let writable_source =
        |c: &Component| restore && (selected.is_empty() || selected.contains(&c.name));

    for c in &mut out.components {
        let writable = writable_source(c);
        let dir = source_dir(&c.name);
        // NB: a verify Job keeps the paths (its config is the restore config) but does
        // not mount the claims.
        if let Some(f) = &mut c.files {
            if let Some(claim) = f.claim_name.take() {
                if !verify {
                    b.mount_claim(&claim, dir.clone(), writable);
                }
                f.path = Some(join(&dir, f.sub_path.take().as_deref()));
            }
        }
        if let Some(s) = &mut c.sqlite {
            if let Some(claim) = s.claim_name.take() {
                if !verify {
                    b.mount_claim(&claim, dir.clone(), writable);
                }
                s.path = Some(join(&dir, s.sub_path.take().as_deref()));
            }
        }
        if let Some(p) = &mut c.postgres_globals {
            if let Some(r) = p.password_secret_ref.take() {
                p.password_file = Some(b.secret_file(&r));
            }
        }
        if let Some(p) = &mut c.postgres {
            if let Some(r) = p.password_secret_ref.take() {
                p.password_file = Some(b.secret_file(&r));
            }
        }
        if let Some(m) = &mut c.mysql {
            if let Some(r) = m.password_secret_ref.take() {
                m.password_file = Some(b.secret_file(&r));
            }
        }
    }

    for d in &mut out.destinations {
        render_destination(&mut b, d);
    }

    if let Some(enc) = &mut out.encryption {
        let identity = enc.age_identity_secret_ref.take();
        enc.age_identity_file = None;
        if restore || verify {
            if let Some(r) = identity {
                enc.age_identity_file = Some(b.secret_file(&r));
            }
        }
    }

    // Scaling is the operator's job; the binary never sees workloads. `suspend` only
    // concerns the scheduler.
    out.quiesce = None;
    out.suspend = false;

    let mut to_path = None;
    if let Mode::Restore {
        to_claim: Some(target),
        ..
    } = mode
    {
        b.mount_claim(&target.claim_name, paths::RESTORE_TARGET.to_string(), true);
        to_path = Some(join(paths::RESTORE_TARGET, target.sub_path.as_deref()));
    }

    b.finish(out, to_path)
}

fn render_destination(b: &mut Builder, d: &mut Destination) {
    if let Some(claim) = d.claim_name.take() {
        let dir = destination_dir(&d.name);
        b.mount_claim(&claim, dir.clone(), true);
        d.path = Some(dir);
    }
    if let Some(s3) = &mut d.s3 {
        if let Some(r) = s3.access_key_id_secret_ref.take() {
            s3.access_key_id_file = Some(b.secret_file(&r));
        }
        if let Some(r) = s3.secret_access_key_secret_ref.take() {
            s3.secret_access_key_file = Some(b.secret_file(&r));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testdata;
    use arca_api::validate::Platform;
    use arca_api::Validator;

    #[test]
    fn rendered_backup_is_a_valid_compose_policy() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        Validator::validate("orthanc", &r.spec, Platform::Files).expect("valid file policy");
    }

    #[test]
    fn rendered_restore_is_a_valid_compose_policy() {
        let r = render(
            &testdata::full_spec(),
            &Mode::Restore {
                components: vec![],
                to_claim: None,
            },
        );
        Validator::validate("orthanc", &r.spec, Platform::Files).expect("valid file policy");
    }

    #[test]
    fn claims_become_paths_under_sources() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        let catalog = r
            .spec
            .components
            .iter()
            .find(|c| c.name == "catalog")
            .unwrap();
        assert_eq!(
            catalog.sqlite.as_ref().unwrap().path.as_deref(),
            Some("/sources/catalog/db/index")
        );
        assert!(catalog.sqlite.as_ref().unwrap().claim_name.is_none());
        let storage = r
            .spec
            .components
            .iter()
            .find(|c| c.name == "storage")
            .unwrap();
        assert_eq!(
            storage.files.as_ref().unwrap().path.as_deref(),
            Some("/sources/storage")
        );
    }

    #[test]
    fn backup_mounts_sources_read_only_and_destinations_writable() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        let mount = |path: &str| r.mounts.iter().find(|m| m.mount_path == path).unwrap();
        assert_eq!(mount("/sources/catalog").read_only, Some(true));
        assert_eq!(mount("/sources/storage").read_only, Some(true));
        assert_eq!(mount("/destinations/local").read_only, Some(false));
        let vol = |claim: &str| {
            r.volumes
                .iter()
                .find(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|p| p.claim_name == claim)
                })
                .unwrap()
        };
        assert_eq!(
            vol("orthanc-data")
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .read_only,
            Some(true)
        );
        assert_eq!(
            vol("backup-disk")
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .read_only,
            Some(false)
        );
    }

    #[test]
    fn one_volume_per_claim_even_when_shared() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        // catalog and storage both live on orthanc-data.
        assert_eq!(
            r.claims,
            vec!["orthanc-data".to_string(), "backup-disk".to_string()]
        );
        let claim_volumes = r
            .volumes
            .iter()
            .filter(|v| v.persistent_volume_claim.is_some())
            .count();
        assert_eq!(claim_volumes, 2);
    }

    #[test]
    fn secrets_become_files_with_only_the_used_keys() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        let pg = r
            .spec
            .components
            .iter()
            .find(|c| c.name == "index")
            .unwrap();
        assert_eq!(
            pg.postgres.as_ref().unwrap().password_file.as_deref(),
            Some("/run/secrets/arca/pg-credentials/password")
        );
        assert!(pg.postgres.as_ref().unwrap().password_secret_ref.is_none());
        let s3 = r.spec.destinations[1].s3.as_ref().unwrap();
        assert_eq!(
            s3.access_key_id_file.as_deref(),
            Some("/run/secrets/arca/s3-credentials/id")
        );
        assert_eq!(
            s3.secret_access_key_file.as_deref(),
            Some("/run/secrets/arca/s3-credentials/secret")
        );
        let vol = r
            .volumes
            .iter()
            .find(|v| {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some("s3-credentials"))
            })
            .unwrap();
        let items = vol.secret.as_ref().unwrap().items.as_ref().unwrap();
        let keys: Vec<_> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["id", "secret"]);
        assert!(items.iter().all(|i| i.mode == Some(0o400)));
        // A key missing from the Secret must fail the run fast (arca names the file), not
        // hold the pod in ContainerCreating until the Job's deadline.
        assert_eq!(vol.secret.as_ref().unwrap().optional, Some(true));
        assert_eq!(
            r.secrets,
            vec!["pg-credentials".to_string(), "s3-credentials".to_string()]
        );
    }

    #[test]
    fn backup_never_mounts_the_age_identity() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        assert!(!r.secrets.contains(&"age-identity".to_string()));
        let enc = r.spec.encryption.as_ref().unwrap();
        assert!(enc.age_identity_file.is_none());
        assert!(enc.age_identity_secret_ref.is_none());
        assert_eq!(enc.age_recipients.len(), 1);
    }

    #[test]
    fn verify_mounts_the_identity_and_destinations_but_no_source() {
        let r = render(&testdata::full_spec(), &Mode::Verify);
        assert!(r.secrets.contains(&"age-identity".to_string()));
        // Deep verifies restore into scratch databases: the credentials are there.
        assert!(r.secrets.contains(&"pg-credentials".to_string()));
        // The destination claim (writable: verification records), never the sources.
        assert_eq!(r.claims, vec!["backup-disk".to_string()]);
        assert!(r
            .mounts
            .iter()
            .all(|m| !m.mount_path.starts_with("/sources")));
        let dest = r
            .mounts
            .iter()
            .find(|m| m.mount_path == "/destinations/local")
            .unwrap();
        assert_eq!(dest.read_only, Some(false));
        let identity = r
            .mounts
            .iter()
            .find(|m| m.mount_path == "/run/secrets/arca/age-identity")
            .unwrap();
        assert_eq!(identity.read_only, Some(true));
    }

    #[test]
    fn verify_reads_the_restore_config() {
        // Verify Jobs mount the ConfigMap's restore.yaml: the rendered files must agree.
        let verify = render(&testdata::full_spec(), &Mode::Verify);
        let restore = render(
            &testdata::full_spec(),
            &Mode::Restore {
                components: vec![],
                to_claim: None,
            },
        );
        assert_eq!(verify.spec, restore.spec);
        assert_eq!(
            verify.spec.encryption.unwrap().age_identity_file.as_deref(),
            Some("/run/secrets/arca/age-identity/key.txt")
        );
    }

    #[test]
    fn restore_mounts_the_identity_and_selected_sources_writable() {
        let r = render(
            &testdata::full_spec(),
            &Mode::Restore {
                components: vec!["storage".into()],
                to_claim: None,
            },
        );
        assert!(r.secrets.contains(&"age-identity".to_string()));
        assert_eq!(
            r.spec
                .encryption
                .as_ref()
                .unwrap()
                .age_identity_file
                .as_deref(),
            Some("/run/secrets/arca/age-identity/key.txt")
        );
        let mount = |path: &str| r.mounts.iter().find(|m| m.mount_path == path).unwrap();
        assert_eq!(mount("/sources/storage").read_only, Some(false));
        assert_eq!(mount("/sources/catalog").read_only, Some(true));
        // The shared claim's volume must allow the writable mount.
        let vol = r
            .volumes
            .iter()
            .find(|v| v.name == mount("/sources/storage").name)
            .unwrap();
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().read_only,
            Some(false)
        );
    }

    #[test]
    fn restore_into_another_claim_sets_to_path() {
        let r = render(
            &testdata::full_spec(),
            &Mode::Restore {
                components: vec!["storage".into()],
                to_claim: Some(ClaimTarget {
                    claim_name: "scratch".into(),
                    sub_path: Some("/copy/".into()),
                }),
            },
        );
        assert_eq!(r.to_path.as_deref(), Some("/restore-target/copy"));
        assert!(r.claims.contains(&"scratch".to_string()));
        let m = r
            .mounts
            .iter()
            .find(|m| m.mount_path == "/restore-target")
            .unwrap();
        assert_eq!(m.read_only, Some(false));
    }

    #[test]
    fn quiesce_and_suspend_stay_with_the_operator() {
        let mut spec = testdata::full_spec();
        spec.suspend = true;
        let r = render(&spec, &Mode::Backup);
        assert!(r.spec.quiesce.is_none());
        assert!(!r.spec.suspend);
    }

    #[test]
    fn no_secret_value_can_reach_the_config() {
        let r = render(&testdata::full_spec(), &Mode::Backup);
        let yaml = serde_yaml::to_string(&r.spec).unwrap();
        assert!(!yaml.contains("SecretRef"), "{yaml}");
        assert!(!yaml.contains("claimName"), "{yaml}");
    }
}
