//! MariaDB end to end: tables, a trigger, a procedure and an event, dumped in one
//! transaction, restored by hand with age, zstd and the mariadb client under a new name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn mariadb_restores_by_hand_under_a_new_name() {
    let ws = Workspace::new();
    let src = unique("arca_my_src");
    let dst = unique("arca_my_dst");
    mariadb("", &format!("CREATE DATABASE {src}"));
    mariadb(
        &src,
        "SET SESSION max_recursive_iterations = 100000;
         CREATE TABLE patients (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100), note TEXT, photo BLOB) ENGINE=InnoDB;
         INSERT INTO patients (name, note, photo)
           WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
           SELECT CONCAT('p', i), CONCAT('it''s (', i, '),(\\n'), UNHEX(SHA2(i, 256)) FROM n;
         CREATE TABLE visits (id INT PRIMARY KEY, patient INT, at DATETIME);
         INSERT INTO visits SELECT id, id, '2026-11-23 03:15:00' FROM patients WHERE id <= 1200;
         CREATE TABLE empty_one (id INT);
         CREATE TRIGGER patients_bi BEFORE INSERT ON patients FOR EACH ROW SET NEW.name = TRIM(NEW.name);
         CREATE PROCEDURE count_patients() SELECT COUNT(*) FROM patients;
         CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM visits WHERE at < '2000-01-01';",
    );
    let dest = ws.path("backup");
    let cfg = ws.write_config(&format!(
        "policies:
  - name: elexis
    encryption: {{ageRecipients: [\"{}\"]}}
    components:
      - name: db
        mysql: {{{my}, database: {src}}}
    destinations:
      - name: local
        path: {}
",
        ws.recipient,
        dest.display(),
        my = my_yaml(),
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secrets(&out);
    let snap = last_line(&out);
    let m = manifest(&dest, "elexis", &snap);
    let c = &m["components"][0];
    assert_eq!(c["kind"], "mysql");
    assert_eq!(c["object"], "db.sql.zst.age");
    let rows = |name: &str| {
        c["items"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["rows"].as_u64().unwrap())
    };
    assert_eq!(rows("patients"), Some(3000));
    assert_eq!(rows("visits"), Some(1200));
    assert_eq!(rows("empty_one"), Some(0));

    let plain = ws.path("db.sql");
    ws.unseal_by_hand(
        &dest.join("elexis").join(&snap).join("db.sql.zst.age"),
        &plain,
    );
    mariadb("", &format!("CREATE DATABASE {dst}"));
    sh(&format!(
        "MYSQL_PWD=\"$(cat '{pw}')\" mariadb --protocol=TCP -h {h} -P {p} -u {u} {dst} < '{f}'",
        pw = env("ARCA_TEST_MY_PASSWORD_FILE"),
        h = env("ARCA_TEST_MY_HOST"),
        p = env("ARCA_TEST_MY_PORT"),
        u = env("ARCA_TEST_MY_USER"),
        f = plain.display()
    ));
    for table in ["patients", "visits", "empty_one"] {
        let a = mariadb(&src, &format!("CHECKSUM TABLE {table}"));
        let b = mariadb(&dst, &format!("CHECKSUM TABLE {table}"));
        assert_eq!(
            a.split('\t').nth(1),
            b.split('\t').nth(1),
            "{table}: {a} vs {b}"
        );
    }
    let objects = |db: &str| {
        mariadb(
            "",
            &format!(
                "SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}'),
                        (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}'),
                        (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA='{db}')"
            ),
        )
    };
    assert_eq!(objects(&dst), "1\t1\t1");
    assert_eq!(objects(&src), objects(&dst));
    mariadb("", &format!("DROP DATABASE {src}; DROP DATABASE {dst}"));
}
