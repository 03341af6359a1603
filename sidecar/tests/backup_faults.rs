//! Bad input and faults: every case exits non-zero with one clear `arca:` line, leaves no
//! manifest for the failed snapshot, and prints no secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

struct Case {
    ws: Workspace,
    dest: std::path::PathBuf,
}

impl Case {
    fn new() -> Self {
        let ws = Workspace::new();
        let dest = ws.path("backup");
        Self { ws, dest }
    }

    /// Run a backup of `components` (YAML list items) to the local destination plus
    /// `extra_dest`; expect failure containing `needle`.
    fn expect_failure(
        &self,
        components: &str,
        extra_dest: &str,
        needle: &str,
    ) -> std::process::Output {
        let cfg = self.ws.write_config(&format!(
            "policies:\n  - name: p\n    encryption: {{ageRecipients: [\"{}\"]}}\n    components:\n{components}\n    destinations:\n      - name: local\n        path: {}\n{extra_dest}",
            self.ws.recipient,
            self.dest.display()
        ));
        let out = run_arca(&["backup", "--config", &cfg]);
        assert!(!out.status.success(), "expected failure for {needle}");
        let line = error_line(&out);
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
        assert_no_secrets(&out);
        out
    }

    fn assert_no_manifest(&self) {
        assert!(
            manifests_in(&self.dest, "p").is_empty(),
            "a manifest was written"
        );
        let left = sh(&format!(
            "find '{}' -type f 2>/dev/null | wc -l",
            self.dest.display()
        ));
        assert_eq!(left.trim(), "0", "artifacts were left behind");
    }
}

fn pg_component(extra: &str) -> String {
    format!(
        "      - name: db\n        postgres: {{{}, database: postgres{extra}}}",
        pg_yaml()
    )
}

#[test]
fn wrong_postgres_password() {
    let c = Case::new();
    let bad = c.ws.path("bad-pw");
    std::fs::write(&bad, "definitely-wrong").unwrap();
    let comp = format!(
        "      - name: db\n        postgres: {{host: {}, port: {}, user: {}, passwordFile: {}, database: postgres}}",
        env("ARCA_TEST_PG_HOST"),
        env("ARCA_TEST_PG_PORT"),
        env("ARCA_TEST_PG_USER"),
        bad.display()
    );
    let out = c.expect_failure(&comp, "", "refused the login");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("definitely-wrong"));
    c.assert_no_manifest();
}

#[test]
fn unreachable_database_servers() {
    let c = Case::new();
    let comp = format!(
        "      - name: db\n        postgres: {{host: 127.0.0.1, port: 1, user: x, passwordFile: {}, database: postgres}}",
        env("ARCA_TEST_PG_PASSWORD_FILE")
    );
    c.expect_failure(&comp, "", "cannot connect to PostgreSQL at 127.0.0.1:1");
    let comp = format!(
        "      - name: db\n        mysql: {{host: 127.0.0.1, port: 1, user: root, passwordFile: {}, database: x}}",
        env("ARCA_TEST_MY_PASSWORD_FILE")
    );
    c.expect_failure(&comp, "", "cannot connect to MariaDB/MySQL at 127.0.0.1:1");
    c.assert_no_manifest();
}

#[test]
fn wrong_mariadb_password_and_missing_database() {
    let c = Case::new();
    let bad = c.ws.path("bad-pw");
    std::fs::write(&bad, "wrong \"quoted\" pw").unwrap();
    let comp = format!(
        "      - name: db\n        mysql: {{host: {}, port: {}, user: root, passwordFile: {}, database: mysql}}",
        env("ARCA_TEST_MY_HOST"),
        env("ARCA_TEST_MY_PORT"),
        bad.display()
    );
    c.expect_failure(&comp, "", "refused the login for user \"root\"");
    let comp = format!(
        "      - name: db\n        mysql: {{{}, database: no_such_db_here}}",
        my_yaml()
    );
    c.expect_failure(&comp, "", "database \"no_such_db_here\" does not exist");
    let comp = pg_component("").replace("database: postgres", "database: no_such_db_here");
    c.expect_failure(&comp, "", "database \"no_such_db_here\" does not exist");
    c.assert_no_manifest();
}

/// A directory holding a stand-in pg_dump (and the real pg_dumpall) for ARCA_PG_BIN_DIR.
fn fake_pg_bin(ws: &Workspace, script: &str) -> std::path::PathBuf {
    let dir = ws.path("pgbin");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("pg_dump");
    std::fs::write(&p, format!("#!/bin/bash\nREAL=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_dump\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_with_pg_bin(c: &Case, bin: &std::path::Path, needle: &str) {
    let cfg = c.ws.write_config(&format!(
        "policies:\n  - name: p\n    components:\n{}\n    destinations:\n      - name: local\n        path: {}\n",
        pg_component(""),
        c.dest.display()
    ));
    let out = arca()
        .args(["backup", "--config", &cfg])
        .env("ARCA_PG_BIN_DIR", bin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains(needle), "{needle:?} not in {line:?}");
    assert_no_secrets(&out);
    c.assert_no_manifest();
}

#[test]
fn dump_tool_missing_too_old_dying_or_empty() {
    let c = Case::new();
    let empty = c.ws.path("nobin");
    std::fs::create_dir_all(&empty).unwrap();
    run_with_pg_bin(&c, &empty, "pg_dump is not installed");
    let old = fake_pg_bin(&c.ws, "echo 'pg_dump (PostgreSQL) 9.6.24'");
    run_with_pg_bin(&c, &old, "pg_dump 9 is older than the server (15)");
    let dies = fake_pg_bin(
        &c.ws,
        "if [ \"$1\" = --version ]; then exec $REAL --version; fi\n$REAL \"$@\" | head -c 3000\necho 'pg_dump: error: connection lost' >&2\nexit 1",
    );
    run_with_pg_bin(
        &c,
        &dies,
        "pg_dump failed: exited with status 1: pg_dump: error: connection lost",
    );
    let silent = fake_pg_bin(
        &c.ws,
        "if [ \"$1\" = --version ]; then exec $REAL --version; fi\nexit 0",
    );
    run_with_pg_bin(&c, &silent, "pg_dump produced an empty dump");
}

#[test]
fn s3_faults_name_the_cause() {
    let c = Case::new();
    let files = c.ws.path("data");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), "a").unwrap();
    let comp = format!(
        "      - name: f\n        files: {{path: {}}}",
        files.display()
    );
    let s3 = |yaml: String| format!("      - name: offsite\n        s3: {yaml}\n");
    let good = s3_yaml(&unique("faults"));

    // Unreachable endpoint.
    let unreachable = good.replace(&env("ARCA_TEST_S3_ENDPOINT"), "http://127.0.0.1:1");
    let cfg_only_s3 = |yaml: String| {
        c.ws.write_config(&format!(
            "policies:\n  - name: p\n    components:\n{comp}\n    destinations:\n      - name: offsite\n        s3: {yaml}\n"
        ))
    };
    for (yaml, needle) in [
        (unreachable, "cannot reach s3://"),
        (
            good.replace(
                &format!("bucket: {}", env("ARCA_TEST_S3_BUCKET")),
                "bucket: no-such-bucket-arca",
            ),
            "bucket no-such-bucket-arca does not exist",
        ),
    ] {
        let out = run_arca(&["backup", "--config", &cfg_only_s3(yaml)]);
        assert!(!out.status.success());
        let line = error_line(&out);
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
        assert_no_secrets(&out);
    }
    // Wrong credentials.
    let bad_key = c.ws.path("bad-key");
    std::fs::write(&bad_key, "not-the-secret").unwrap();
    let wrong = good.replace(
        &env("ARCA_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        &bad_key.display().to_string(),
    );
    let out = run_arca(&["backup", "--config", &cfg_only_s3(wrong.clone())]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(!line.contains("not-the-secret"));

    // One destination fails, the other keeps its snapshot; the run still fails and names it.
    let out = c.expect_failure(&comp, &s3(wrong), "destination \"offsite\" failed");
    let line = error_line(&out);
    assert!(line.contains("is complete at local"), "{line}");
    let snap = last_line(&out);
    assert_eq!(manifests_in(&c.dest, "p"), vec![snap]);
}

#[test]
fn a_full_destination_fails_cleanly() {
    let c = Case::new();
    let small = c.ws.path("small-disk");
    std::fs::create_dir_all(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=3m tmpfs '{}'",
        small.display()
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let data = c.ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    sh(&format!(
        "head -c 8000000 /dev/urandom > '{}/big.bin'",
        data.display()
    ));
    let cfg = c.ws.write_config(&format!(
        "policies:\n  - name: p\n    components:\n      - name: f\n        files: {{path: {}}}\n    destinations:\n      - name: usb\n        path: {}/backups\n",
        data.display(),
        small.display()
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("is full"), "{line}");
    let left = sh(&format!("find '{}' -type f | wc -l", small.display()));
    assert_eq!(left.trim(), "0", "partial files were left on the full disk");
}

#[test]
fn bad_configs_are_refused_with_exit_2() {
    let ws = Workspace::new();
    let cases = [
        ("policies:\n  - name: p\n    colour: red\n    components: []\n    destinations: []\n", "unknown field `colour`"),
        (
            "policies:\n  - name: p\n    schedule: \"61 * * * *\"\n    components:\n      - {name: f, files: {path: /tmp}}\n    destinations:\n      - {name: d, path: /tmp/x}\n",
            "invalid cron expression",
        ),
        (
            "policies:\n  - name: p\n    components:\n      - {name: f, files: {path: /tmp}}\n      - {name: f, files: {path: /var}}\n    destinations:\n      - {name: d, path: /tmp/x}\n",
            "duplicate component name \"f\"",
        ),
        (
            "policies:\n  - name: p\n    components:\n      - {name: db, postgres: {host: h, user: u, database: d, passwordFile: /nonexistent/secret}}\n    destinations:\n      - {name: d, path: /tmp/x}\n",
            "cannot read the password (db) file /nonexistent/secret",
        ),
        (
            "policies:\n  - name: p\n    timeZone: Mars/Base\n    components:\n      - {name: f, files: {path: /tmp}}\n    destinations:\n      - {name: d, path: /tmp/x}\n",
            "unknown time zone",
        ),
    ];
    for (yaml, needle) in cases {
        let cfg = ws.write_config(yaml);
        let out = run_arca(&["backup", "--config", &cfg]);
        assert_eq!(out.status.code(), Some(2), "{needle}");
        let line = error_line(&out);
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
    let out = run_arca(&["backup", "--config", "/nonexistent/arca.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("cannot read config /nonexistent/arca.yaml"));
}

#[test]
fn missing_source_paths_fail_clearly() {
    let c = Case::new();
    c.expect_failure(
        "      - name: f\n        files: {path: /nonexistent/storage}",
        "",
        "/nonexistent/storage does not exist",
    );
    let notdb = c.ws.path("not.sqlite");
    std::fs::write(&notdb, "plain text").unwrap();
    c.expect_failure(
        &format!(
            "      - name: s\n        sqlite: {{path: {}}}",
            notdb.display()
        ),
        "",
        "is not a SQLite 3 database",
    );
    c.assert_no_manifest();
}

#[test]
fn result_file_reports_success_and_failure() {
    let ws = Workspace::new();
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("x"), "x").unwrap();
    let cfg = ws.write_config(&format!(
        "policies:\n  - name: p\n    components:\n      - {{name: f, files: {{path: {}}}}}\n    destinations:\n      - {{name: d, path: {}}}\n",
        data.display(),
        ws.path("b").display()
    ));
    let rf = ws.path("result.json");
    let out = run_arca(&[
        "backup",
        "--config",
        &cfg,
        "--result-file",
        rf.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rf).unwrap()).unwrap();
    assert_eq!(r["format"], "arca-result/1");
    assert_eq!(r["ok"], true);
    assert_eq!(r["snapshot"], last_line(&out).as_str());
    std::fs::remove_dir_all(&data).unwrap();
    let out = run_arca(&[
        "backup",
        "--config",
        &cfg,
        "--result-file",
        rf.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rf).unwrap()).unwrap();
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("does not exist"));
}
