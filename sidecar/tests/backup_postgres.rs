//! PostgreSQL end to end: roles, several schemas and a large object, backed up to a
//! directory and to S3 in one run, then restored by hand with age, zstd and pg_restore
//! into a new database and compared table by table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn table_digest(db: &str, table: &str) -> String {
    psql(
        db,
        &format!("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
    )
}

#[test]
fn postgres_and_globals_restore_by_hand_to_identical_content() {
    let ws = Workspace::new();
    let role = unique("arca_role");
    let src = unique("arca_src");
    let dst = unique("arca_dst");
    psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'role-secret-x'"),
    );
    psql("postgres", &format!("CREATE DATABASE {src} OWNER {role}"));
    psql(
        &src,
        &format!(
            "CREATE SCHEMA clinic AUTHORIZATION {role};
             CREATE SCHEMA audit AUTHORIZATION {role};
             CREATE TABLE clinic.patients (id serial PRIMARY KEY, name text, born date, photo bytea);
             INSERT INTO clinic.patients (name, born, photo)
               SELECT 'patient ' || i, date '1950-01-01' + i, decode(md5(i::text), 'hex') FROM generate_series(1, 5000) i;
             CREATE TABLE audit.log (id bigserial PRIMARY KEY, entry jsonb);
             INSERT INTO audit.log (entry) SELECT jsonb_build_object('n', i, 'text', 'it''s (' || i || ')') FROM generate_series(1, 2000) i;
             CREATE TABLE public.empty (id int);
             CREATE VIEW clinic.recent AS SELECT * FROM clinic.patients WHERE id > 4900;
             SELECT lo_from_bytea(0, 'large object payload');
             ALTER TABLE clinic.patients OWNER TO {role};"
        ),
    );

    let dest = ws.path("backup");
    let prefix = unique("pg");
    let cfg = ws.write_config(&format!(
        "policies:
  - name: clinic
    encryption: {{ageRecipients: [\"{}\"]}}
    components:
      - name: globals
        postgresGlobals: {{{pg}}}
      - name: index
        postgres: {{{pg}, database: {src}}}
    destinations:
      - name: local
        path: {}
      - name: offsite
        s3: {}
",
        ws.recipient,
        dest.display(),
        s3_yaml(&prefix),
        pg = pg_yaml(),
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secrets(&out);
    let snap = last_line(&out);
    let m = manifest(&dest, "clinic", &snap);
    assert_eq!(m["format"], "arca/1");
    assert_eq!(m["snapshot"], snap.as_str());
    let index = &m["components"][1];
    assert_eq!(index["kind"], "postgres");
    assert_eq!(index["object"], "index.pgdump.zst.age");
    assert_eq!(index["owner"], role.as_str());
    assert!(index["serverVersion"]
        .as_str()
        .unwrap_or_default()
        .starts_with("15"));
    let rows = |name: &str| {
        index["items"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["rows"].as_u64().unwrap())
    };
    assert_eq!(rows("clinic.patients"), Some(5000));
    assert_eq!(rows("audit.log"), Some(2000));
    assert_eq!(rows("public.empty"), Some(0));
    assert_eq!(index["items"]["largeObjects"], 1);

    // The S3 copy is byte-identical to the directory copy and to the manifest's digest.
    let local_bytes =
        std::fs::read(dest.join("clinic").join(&snap).join("index.pgdump.zst.age")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3_bytes = rt
        .block_on(s3_store(&prefix).get_bytes(&format!("clinic/{snap}/index.pgdump.zst.age")))
        .unwrap()
        .expect("artifact in S3");
    assert_eq!(local_bytes, s3_bytes.to_vec());
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&local_bytes)),
        index["sha256"].as_str().unwrap()
    );

    // By hand: age -d | zstd -d | pg_restore into a new database.
    let plain = ws.path("index.pgdump");
    ws.unseal_by_hand(
        &dest.join("clinic").join(&snap).join("index.pgdump.zst.age"),
        &plain,
    );
    psql("postgres", &format!("CREATE DATABASE {dst} OWNER {role}"));
    sh(&format!(
        "PGPASSWORD=\"$(cat '{pw}')\" pg_restore --exit-on-error -h {h} -p {p} -U {u} -d {dst} '{f}'",
        pw = env("ARCA_TEST_PG_PASSWORD_FILE"),
        h = env("ARCA_TEST_PG_HOST"),
        p = env("ARCA_TEST_PG_PORT"),
        u = env("ARCA_TEST_PG_USER"),
        f = plain.display()
    ));
    for table in ["clinic.patients", "audit.log", "public.empty"] {
        assert_eq!(
            table_digest(&src, table),
            table_digest(&dst, table),
            "{table}"
        );
    }
    assert_eq!(
        psql(
            &dst,
            "SELECT encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata"
        ),
        "large object payload"
    );
    assert_eq!(psql(&dst, "SELECT count(*) FROM clinic.recent"), "100");
    assert_eq!(
        psql(
            &dst,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'patients'"
        ),
        role
    );

    // Globals: the roles come back with psql after being dropped.
    let globals = ws.path("globals.sql");
    ws.unseal_by_hand(
        &dest.join("clinic").join(&snap).join("globals.sql.zst.age"),
        &globals,
    );
    let sql = std::fs::read_to_string(&globals).unwrap();
    assert!(
        sql.contains(&format!("CREATE ROLE {role}")),
        "role missing from globals dump"
    );
    let spare = unique("arca_spare");
    psql("postgres", &format!("CREATE ROLE {spare} NOLOGIN"));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap2 = last_line(&out);
    assert_ne!(snap, snap2);
    psql("postgres", &format!("DROP ROLE {spare}"));
    ws.unseal_by_hand(
        &dest.join("clinic").join(&snap2).join("globals.sql.zst.age"),
        &globals,
    );
    sh(&format!(
        "PGPASSWORD=\"$(cat '{pw}')\" psql -X -q -h {h} -p {p} -U {u} -d postgres -f '{f}' >/dev/null 2>&1 || true",
        pw = env("ARCA_TEST_PG_PASSWORD_FILE"),
        h = env("ARCA_TEST_PG_HOST"),
        p = env("ARCA_TEST_PG_PORT"),
        u = env("ARCA_TEST_PG_USER"),
        f = globals.display()
    ));
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{spare}'")
        ),
        "1"
    );

    // Both snapshots are listed, newest first.
    let out = run_arca(&["snapshots", "--config", &cfg, "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["format"], "arca-snapshots/1");
    assert_eq!(list["snapshots"][0]["snapshot"], snap2.as_str());
    assert_eq!(list["snapshots"][1]["snapshot"], snap.as_str());
    assert_eq!(
        list["snapshots"][0]["destinations"],
        serde_json::json!(["local", "offsite"])
    );

    psql("postgres", &format!("DROP DATABASE {src}"));
    psql("postgres", &format!("DROP DATABASE {dst}"));
}
