//! Helpers for end-to-end tests against the real services started by
//! `scripts/services.sh up` (PostgreSQL, MariaDB, Garage S3) and the real tools
//! (age, zstd, tar, pg_restore, psql, mariadb, sqlite3).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A setting from the services env file; tests fail clearly when services are not up.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL, MariaDB and S3 and exports their settings")
    })
}

/// A secret read from the file named by env var `name`.
pub fn secret(name: &str) -> String {
    std::fs::read_to_string(env(name)).expect("secret file")
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The arca binary under test.
pub fn arca() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arca"));
    c.env("ARCA_LOG", "info");
    c
}

/// Run arca with `args`.
pub fn run_arca(args: &[&str]) -> Output {
    arca().args(args).output().expect("arca runs")
}

/// Run a command, panicking with its stderr on failure.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "command failed: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// psql as the test superuser (password via env, never argv).
pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            &env("ARCA_TEST_PG_HOST"),
            "-p",
            &env("ARCA_TEST_PG_PORT"),
        ])
        .args(["-U", &env("ARCA_TEST_PG_USER"), "-d", db, "-c", sql])
        .env("PGPASSWORD", secret("ARCA_TEST_PG_PASSWORD_FILE"))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// mariadb client as the test root user (password via env).
pub fn mariadb(db: &str, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h",
            &env("ARCA_TEST_MY_HOST"),
            "-P",
            &env("ARCA_TEST_MY_PORT"),
        ])
        .args(["-u", &env("ARCA_TEST_MY_USER"), "-N", "-B"])
        .args(if db.is_empty() { vec![] } else { vec![db] })
        .args(["-e", sql])
        .env("MYSQL_PWD", secret("ARCA_TEST_MY_PASSWORD_FILE"))
        .output()
        .expect("mariadb");
    assert!(
        out.status.success(),
        "mariadb failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working directory with an age identity.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub recipient: String,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = dir.path().join("key.txt");
        let out = arca()
            .args(["keygen", "--output"])
            .arg(&identity)
            .output()
            .expect("keygen");
        assert!(out.status.success());
        let recipient = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(recipient.starts_with("age1"), "{recipient}");
        Self {
            dir,
            identity,
            recipient,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_config(&self, yaml: &str) -> String {
        let p = self.path("arca.yaml");
        std::fs::write(&p, yaml).expect("config");
        p.display().to_string()
    }

    /// Decrypt and decompress an artifact with the standard tools, into `out`.
    pub fn unseal_by_hand(&self, artifact: &Path, out: &Path) {
        sh(&format!(
            "age -d -i '{}' '{}' | zstd -d -q -f -o '{}'",
            self.identity.display(),
            artifact.display(),
            out.display()
        ));
    }
}

/// YAML for the test PostgreSQL connection.
pub fn pg_yaml() -> String {
    format!(
        "host: {}, port: {}, user: {}, passwordFile: {}",
        env("ARCA_TEST_PG_HOST"),
        env("ARCA_TEST_PG_PORT"),
        env("ARCA_TEST_PG_USER"),
        env("ARCA_TEST_PG_PASSWORD_FILE")
    )
}

/// YAML for the test MariaDB connection.
pub fn my_yaml() -> String {
    format!(
        "host: {}, port: {}, user: {}, passwordFile: {}",
        env("ARCA_TEST_MY_HOST"),
        env("ARCA_TEST_MY_PORT"),
        env("ARCA_TEST_MY_USER"),
        env("ARCA_TEST_MY_PASSWORD_FILE")
    )
}

/// YAML for an S3 destination under a fresh prefix.
pub fn s3_yaml(prefix: &str) -> String {
    format!(
        "{{endpoint: \"{}\", region: {}, bucket: {}, prefix: {prefix}, pathStyle: true, accessKeyIdFile: {}, secretAccessKeyFile: {}}}",
        env("ARCA_TEST_S3_ENDPOINT"),
        env("ARCA_TEST_S3_REGION"),
        env("ARCA_TEST_S3_BUCKET"),
        env("ARCA_TEST_S3_ACCESS_KEY_ID_FILE"),
        env("ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE")
    )
}

/// The test bucket as a store (for reading back what arca wrote).
pub fn s3_store(prefix: &str) -> arca::store::Store {
    use arca::secret::Secret;
    arca::store::Store::S3(arca::store::s3::S3Store::new(arca::store::s3::S3Settings {
        endpoint: Some(env("ARCA_TEST_S3_ENDPOINT")),
        region: env("ARCA_TEST_S3_REGION"),
        bucket: env("ARCA_TEST_S3_BUCKET"),
        prefix: prefix.to_string(),
        path_style: true,
        credentials: Some((
            Secret::new(secret("ARCA_TEST_S3_ACCESS_KEY_ID_FILE")),
            Secret::new(secret("ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE")),
        )),
        max_in_flight: 2,
    }))
}

/// The last stdout line (the snapshot id).
pub fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The `arca: ...` error line of a failed run; asserts there is exactly one.
pub fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("arca: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    lines[0].to_string()
}

/// Read a manifest from a path destination.
pub fn manifest(dest: &Path, policy: &str, snapshot: &str) -> serde_json::Value {
    let p = dest.join(policy).join(snapshot).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("manifest json")
}

/// Snapshot folders with a manifest under a path destination.
pub fn manifests_in(dest: &Path, policy: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dest.join(policy)) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Assert none of the secrets appear in the output.
pub fn assert_no_secrets(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "ARCA_TEST_PG_PASSWORD_FILE",
        "ARCA_TEST_MY_PASSWORD_FILE",
        "ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE",
    ] {
        let s = secret(name);
        assert!(!all.contains(&s), "secret from {name} leaked into output");
    }
}

pub fn stdin_null() -> Stdio {
    Stdio::null()
}
