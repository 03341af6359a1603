//! PostgreSQL over TLS, against the test server, whose certificate is signed by a test CA
//! and whose `pg_hba.conf` lets the role `arca_tls` in over TLS only (scripts/services.sh):
//! the default sslMode (prefer) and `verify-full` with the right CA back up and restore;
//! `disable`, `verify-full` with a foreign CA and `verify-ca` without any CA fail with one
//! line that says what to change, and leave no snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::process::Output;

/// The TLS-only role, with the superuser's password (created once, idempotent).
fn tls_role() -> &'static str {
    let pw = secret("ARCA_TEST_PG_PASSWORD_FILE").replace('\'', "''");
    psql(
        "postgres",
        &format!(
            "DO $$ BEGIN
               CREATE ROLE arca_tls LOGIN SUPERUSER PASSWORD '{pw}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ),
    );
    "arca_tls"
}

fn tls_yaml(ssl_mode: Option<&str>) -> String {
    format!(
        "host: {}, port: {}, user: {}, passwordFile: {}{}",
        env("ARCA_TEST_PG_HOST"),
        env("ARCA_TEST_PG_PORT"),
        tls_role(),
        env("ARCA_TEST_PG_PASSWORD_FILE"),
        ssl_mode
            .map(|m| format!(", sslMode: {m}"))
            .unwrap_or_default()
    )
}

/// Back up `db` with this sslMode and these environment overrides.
fn backup(ws: &Workspace, db: &str, ssl_mode: Option<&str>, envs: &[(&str, &str)]) -> Output {
    let cfg = ws.write_config(&format!(
        "policies:
  - name: tls
    encryption: {{ageRecipients: [\"{}\"], ageIdentityFile: {}}}
    components:
      - name: db
        postgres: {{{}, database: {db}}}
    destinations:
      - name: local
        path: {}
",
        ws.recipient,
        ws.identity.display(),
        tls_yaml(ssl_mode),
        ws.path("backup").display()
    ));
    let mut cmd = arca();
    cmd.args(["backup", "--config", &cfg])
        .env_remove("PGSSLROOTCERT");
    // NB: no ~/.postgresql/root.crt of the machine may change what the modes do.
    cmd.env("HOME", ws.path("home"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("arca runs")
}

fn source_db() -> String {
    let db = unique("arca_tls_src");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 500) i;",
    );
    db
}

#[test]
fn backup_and_restore_over_tls_with_prefer_and_verify_full() {
    let ws = Workspace::new();
    let db = source_db();
    let ca = env("ARCA_TEST_PG_CA_FILE");

    // The server refuses plain connections for this role: the default (prefer) uses TLS.
    let out = backup(&ws, &db, None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = last_line(&out);
    let m = manifest(&ws.path("backup"), "tls", &snap);
    assert_eq!(m["components"][0]["items"]["tables"][0]["rows"], 500, "{m}");

    // verify-full with the CA that signed the server's certificate.
    let out = backup(&ws, &db, Some("verify-full"), &[("PGSSLROOTCERT", &ca)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secrets(&out);

    // Restore under a new name over TLS, and compare.
    let copy = unique("arca_tls_copy");
    let out = arca()
        .args([
            "restore",
            "--config",
            &ws.path("arca.yaml").display().to_string(),
            "--to-database",
            &copy,
        ])
        .env("PGSSLROOTCERT", &ca)
        .env("HOME", ws.path("home"))
        .output()
        .expect("restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = "SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY id)) FROM notes";
    assert_eq!(psql(&copy, digest), psql(&db, digest));
    psql("postgres", &format!("DROP DATABASE {copy}"));
    psql("postgres", &format!("DROP DATABASE {db}"));
}

#[test]
fn tls_refusals_are_one_clear_line_and_leave_no_snapshot() {
    let ws = Workspace::new();
    let db = source_db();

    // Plain TCP where the server demands TLS.
    let out = backup(&ws, &db, Some("disable"), &[]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("over TLS only") && line.contains("sslMode"),
        "{line}"
    );

    // A CA that did not sign the server's certificate.
    let other = ws.path("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    sh(&format!(
        "cd '{}' && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=not the CA' -keyout k.pem -out ca.crt 2>/dev/null",
        other.display()
    ));
    let foreign = other.join("ca.crt").display().to_string();
    let out = backup(
        &ws,
        &db,
        Some("verify-full"),
        &[("PGSSLROOTCERT", &foreign)],
    );
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("certificate is not trusted") && line.contains("PGSSLROOTCERT"),
        "{line}"
    );

    // verify-ca without any CA to verify against.
    let out = backup(&ws, &db, Some("verify-ca"), &[]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("PGSSLROOTCERT"), "{line}");
    assert_no_secrets(&out);

    assert!(
        manifests_in(&ws.path("backup"), "tls").is_empty(),
        "no snapshot from a refused run"
    );
    psql("postgres", &format!("DROP DATABASE {db}"));
}
