//! Restore, verify and prune end to end against the real services: restores under a new
//! name with identical content, replacing a live target only after a safety snapshot,
//! corrupted and hostile artifacts refused with live data untouched, retention applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn table_digest(db: &str, table: &str) -> String {
    psql(
        db,
        &format!("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
    )
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "arca failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn postgres_restore_under_a_new_name_and_in_place_with_safety_snapshot() {
    let ws = Workspace::new();
    let role = unique("arca_rrole");
    let src = unique("arca_rsrc");
    let copy = unique("arca_rcopy");
    psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    psql("postgres", &format!("CREATE DATABASE {src} OWNER {role}"));
    psql(
        &src,
        &format!(
            "CREATE SCHEMA clinic AUTHORIZATION {role}; CREATE SCHEMA audit AUTHORIZATION {role};
             CREATE TABLE clinic.patients (id serial PRIMARY KEY, name text, photo bytea);
             INSERT INTO clinic.patients (name, photo) SELECT 'p' || i, decode(md5(i::text), 'hex') FROM generate_series(1, 3000) i;
             CREATE TABLE audit.log (id bigserial PRIMARY KEY, entry jsonb);
             INSERT INTO audit.log (entry) SELECT jsonb_build_object('n', i) FROM generate_series(1, 500) i;
             SELECT lo_from_bytea(0, 'scan.pdf bytes');
             ALTER TABLE clinic.patients OWNER TO {role}; ALTER TABLE audit.log OWNER TO {role};"
        ),
    );
    let dest = ws.path("backup");
    let cfg = ws.write_config(&format!(
        "policies:
  - name: gnumed
    encryption: {{ageRecipients: [\"{}\"], ageIdentityFile: {}}}
    components:
      - name: roles
        postgresGlobals: {{{pg}}}
      - name: db
        postgres: {{{pg}, database: {src}}}
    destinations:
      - name: local
        path: {}
",
        ws.recipient,
        ws.identity.display(),
        dest.display(),
        pg = pg_yaml(),
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    ok(&out);
    let snap = last_line(&out);
    let before = [
        table_digest(&src, "clinic.patients"),
        table_digest(&src, "audit.log"),
    ];

    // Under a new name: created with the recorded owner, identical content.
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--policy",
        "gnumed",
        "--snapshot",
        "latest",
        "--component",
        "db",
        "--to-database",
        &copy,
    ]);
    ok(&out);
    assert_eq!(last_line(&out), snap);
    assert_eq!(table_digest(&copy, "clinic.patients"), before[0]);
    assert_eq!(table_digest(&copy, "audit.log"), before[1]);
    assert_eq!(
        psql(
            &copy,
            "SELECT encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata"
        ),
        "scan.pdf bytes"
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{copy}'")
        ),
        role
    );

    // The copy now exists: restoring to it again is refused without --force.
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--snapshot",
        &snap,
        "--component",
        "db",
        "--to-database",
        &copy,
    ]);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("--force"), "{}", error_line(&out));

    // Damage the live database, then restore in place: a safety snapshot is taken first.
    psql(&src, "DELETE FROM clinic.patients WHERE id > 100; INSERT INTO audit.log (entry) VALUES ('{\"late\": true}')");
    let damaged = table_digest(&src, "clinic.patients");
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--snapshot",
        "latest",
        "--force",
    ]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("safety snapshot of the previous state"));
    assert_eq!(table_digest(&src, "clinic.patients"), before[0]);
    assert_eq!(table_digest(&src, "audit.log"), before[1]);

    // `latest` still means the real backup; the pre-restore snapshot holds the damaged state.
    let list: serde_json::Value =
        serde_json::from_slice(&run_arca(&["snapshots", "--config", &cfg, "--json"]).stdout)
            .unwrap();
    let safety = list["snapshots"][0].clone();
    assert_eq!(safety["reason"], "preRestore");
    let safety_id = safety["snapshot"].as_str().unwrap().to_string();
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--snapshot",
        &safety_id,
        "--component",
        "db",
        "--to-database",
        &format!("{copy}_s"),
    ]);
    ok(&out);
    assert_eq!(
        table_digest(&format!("{copy}_s"), "clinic.patients"),
        damaged
    );

    // Deep verification restores into a scratch database and compares every count.
    let out = run_arca(&["verify", "--config", &cfg, "--snapshot", &snap, "--deep"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let scratch = psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'arca_verify_%'",
    );
    assert_eq!(scratch, "0", "scratch databases are dropped");

    for db in [&src, &copy, &format!("{copy}_s")] {
        psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    }
}

#[test]
fn mariadb_restore_under_a_new_name_and_deep_verify() {
    let ws = Workspace::new();
    let src = unique("arca_mr_src");
    let copy = unique("arca_mr_copy");
    mariadb("", &format!("CREATE DATABASE {src}"));
    mariadb(
        &src,
        "CREATE TABLE docs (id INT PRIMARY KEY, title VARCHAR(50), body MEDIUMBLOB);
         INSERT INTO docs SELECT seq, CONCAT('doc ', seq), RANDOM_BYTES(200) FROM seq_1_to_800;
         CREATE VIEW recent AS SELECT * FROM docs WHERE id > 700;
         CREATE PROCEDURE n() SELECT COUNT(*) FROM docs;",
    );
    let cfg = ws.write_config(&format!(
        "policies:
  - name: elexis
    encryption: {{ageRecipients: [\"{}\"], ageIdentityFile: {}}}
    components:
      - name: db
        mysql: {{{my}, database: {src}}}
    destinations:
      - name: local
        path: {}
",
        ws.recipient,
        ws.identity.display(),
        ws.path("backup").display(),
        my = my_yaml(),
    ));
    ok(&run_arca(&["backup", "--config", &cfg]));
    ok(&run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--to-database",
        &copy,
    ]));
    assert_eq!(
        mariadb(&src, "CHECKSUM TABLE docs").split('\t').nth(1),
        mariadb(&copy, "CHECKSUM TABLE docs").split('\t').nth(1)
    );
    assert_eq!(mariadb(&copy, "SELECT COUNT(*) FROM recent"), "100");
    ok(&run_arca(&["verify", "--config", &cfg, "--deep"]));
    // Restoring over the existing copy needs --force; with it, a safety snapshot first.
    let out = run_arca(&["restore", "--config", &cfg, "--to-database", &copy]);
    assert!(!out.status.success());
    mariadb(&copy, "DELETE FROM docs WHERE id < 10");
    ok(&run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--to-database",
        &copy,
        "--force",
    ]));
    assert_eq!(mariadb(&copy, "SELECT COUNT(*) FROM docs"), "800");
    mariadb("", &format!("DROP DATABASE {src}; DROP DATABASE {copy}"));
}

fn files_policy(ws: &Workspace, tree: &std::path::Path, keep_last: u32) -> String {
    ws.write_config(&format!(
        "policies:
  - name: scans
    encryption: {{ageRecipients: [\"{}\"], ageIdentityFile: {}}}
    components:
      - name: docs
        files: {{path: {}, exclude: [\"*.tmp\"]}}
    destinations:
      - name: local
        path: {}
        retention: {{keepLast: {keep_last}}}
",
        ws.recipient,
        ws.identity.display(),
        tree.display(),
        ws.path("backup").display()
    ))
}

#[test]
fn corrupted_and_truncated_artifacts_are_caught_and_live_data_is_untouched() {
    let ws = Workspace::new();
    let tree = ws.path("tree");
    sh(&format!("mkdir -p '{t}/a' && head -c 300000 /dev/urandom > '{t}/a/scan.pdf' && echo hi > '{t}/note.txt'", t = tree.display()));
    let cfg = files_policy(&ws, &tree, 10);
    let out = run_arca(&["backup", "--config", &cfg]);
    ok(&out);
    let snap = last_line(&out);
    let artifact = ws
        .path("backup")
        .join("scans")
        .join(&snap)
        .join("docs.tar.zst.age");
    let pristine = std::fs::read(&artifact).unwrap();
    let live_before = sh(&format!(
        "cd '{}' && find . -printf '%P %s %T@\\n' | sort && cat note.txt",
        tree.display()
    ));

    // One flipped byte: verify fails, naming the component; restore --force refuses
    // before touching the live tree.
    let mut bad = pristine.clone();
    bad[pristine.len() / 2] ^= 0x55;
    std::fs::write(&artifact, &bad).unwrap();
    let out = run_arca(&["verify", "--config", &cfg]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("component \"docs\""),
        "{}",
        error_line(&out)
    );
    std::fs::write(tree.join("note.txt"), "edited\n").unwrap();
    let live = sh(&format!(
        "cd '{}' && find . -printf '%P %s %T@\\n' | sort && cat note.txt",
        tree.display()
    ));
    let out = run_arca(&["restore", "--config", &cfg, "--force", "--no-safety-backup"]);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("damaged"), "{}", error_line(&out));
    assert_eq!(
        live,
        sh(&format!(
            "cd '{}' && find . -printf '%P %s %T@\\n' | sort && cat note.txt",
            tree.display()
        ))
    );

    // Truncated: the digest check names the mismatch.
    std::fs::write(&artifact, &pristine[..pristine.len() - 100]).unwrap();
    let out = run_arca(&["verify", "--config", &cfg]);
    assert!(!out.status.success());
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--to-path",
        ws.path("elsewhere").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    error_line(&out);

    // Restored artifact: verify passes and records it; snapshots shows it.
    std::fs::write(&artifact, &pristine).unwrap();
    ok(&run_arca(&["verify", "--config", &cfg, "--deep"]));
    let list =
        String::from_utf8_lossy(&run_arca(&["snapshots", "--config", &cfg]).stdout).into_owned();
    assert!(list.contains("ok deep"), "{list}");
    let _ = live_before;
}

#[test]
fn wrong_key_unknown_snapshot_and_too_small_disk_are_refused() {
    let ws = Workspace::new();
    let tree = ws.path("tree");
    sh(&format!(
        "mkdir -p '{t}' && head -c 6000000 /dev/urandom > '{t}/big.bin'",
        t = tree.display()
    ));
    let cfg = files_policy(&ws, &tree, 10);
    ok(&run_arca(&["backup", "--config", &cfg]));
    let other = ws.path("other-key.txt");
    ok(&arca()
        .args(["keygen", "--output"])
        .arg(&other)
        .output()
        .unwrap());
    let out = arca()
        .args(["restore", "--config", &cfg, "--to-path"])
        .arg(ws.path("x"))
        .env("ARCA_AGE_IDENTITY_FILE", &other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("does not match the recipients"),
        "{}",
        error_line(&out)
    );
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--snapshot",
        "20200101T000000Z",
    ]);
    assert!(error_line(&out).contains("snapshot 20200101T000000Z does not exist"));
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--before",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(error_line(&out).contains("no snapshot started before"));
    let out = run_arca(&["restore", "--config", &cfg, "--component", "nope"]);
    assert!(error_line(&out).contains("has no component \"nope\""));

    let small = ws.path("small");
    std::fs::create_dir_all(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=2m tmpfs '{}'",
        small.display()
    ));
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--to-path",
        small.join("r").to_str().unwrap(),
    ]);
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("not enough room"),
        "{}",
        error_line(&out)
    );
}

#[test]
fn a_hostile_tar_is_refused_and_nothing_is_written_outside() {
    let ws = Workspace::new();
    let tree = ws.path("tree");
    sh(&format!(
        "mkdir -p '{t}' && echo ok > '{t}/f'",
        t = tree.display()
    ));
    let cfg = files_policy(&ws, &tree, 10);
    let out = run_arca(&["backup", "--config", &cfg]);
    ok(&out);
    let snap = last_line(&out);
    // Replace the artifact with a hostile tar (an entry climbing out with ..), sealed with
    // the standard tools, and fix the manifest's digests so only the extractor stands guard.
    let evil_dir = ws.path("evil");
    std::fs::create_dir_all(evil_dir.join("inner")).unwrap();
    std::fs::write(ws.path("escaped.txt"), "planted").unwrap();
    let tar_path = ws.path("evil.tar");
    sh(&format!(
        "cd '{}/inner' && tar -P -cf '{}' ../../escaped.txt && rm '{}'",
        evil_dir.display(),
        tar_path.display(),
        ws.path("escaped.txt").display()
    ));
    let sealed = ws
        .path("backup")
        .join("scans")
        .join(&snap)
        .join("docs.tar.zst.age");
    sh(&format!(
        "zstd -q -c '{}' | age -r {} > '{}'",
        tar_path.display(),
        ws.recipient,
        sealed.display()
    ));
    let plain = std::fs::read(&tar_path).unwrap();
    let stored = std::fs::read(&sealed).unwrap();
    use sha2::Digest;
    let mpath = ws
        .path("backup")
        .join("scans")
        .join(&snap)
        .join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["components"][0]["size"] = stored.len().into();
    m["components"][0]["sha256"] = hex::encode(sha2::Sha256::digest(&stored)).into();
    m["components"][0]["plainSize"] = plain.len().into();
    m["components"][0]["plainSha256"] = hex::encode(sha2::Sha256::digest(&plain)).into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();

    let target = ws.path("restore-here/deep");
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--to-path",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("refusing hostile archive entry"),
        "{}",
        error_line(&out)
    );
    assert!(
        !ws.path("escaped.txt").exists(),
        "an entry escaped the target"
    );
    assert!(
        !ws.path("restore-here/escaped.txt").exists(),
        "an entry escaped the target"
    );
}

#[test]
fn files_delete_newer_reproduces_the_snapshot_and_retention_prunes() {
    let ws = Workspace::new();
    let tree = ws.path("attachments");
    sh(&format!("mkdir -p '{t}/p1' && echo a > '{t}/p1/a.pdf' && echo b > '{t}/b.pdf' && echo t > '{t}/x.tmp'", t = tree.display()));
    let cfg = files_policy(&ws, &tree, 2);
    let first = last_line(&run_arca(&["backup", "--config", &cfg]));
    // Newer attachments arrive; then restore the first snapshot exactly.
    sh(&format!("echo new > '{t}/p1/new.pdf' && mkdir -p '{t}/p2' && echo n > '{t}/p2/n.pdf' && echo changed > '{t}/b.pdf'", t = tree.display()));
    let out = run_arca(&[
        "restore",
        "--config",
        &cfg,
        "--snapshot",
        &first,
        "--force",
        "--delete-newer",
    ]);
    ok(&out);
    let listing = sh(&format!(
        "cd '{}' && find . -mindepth 1 | sort && cat b.pdf",
        tree.display()
    ));
    assert_eq!(
        listing, "./b.pdf\n./p1\n./p1/a.pdf\n./x.tmp\nb\n",
        "excluded *.tmp kept, newer files gone"
    );

    // Retention keepLast 2: after more backups only the newest two ordinary snapshots stay
    // (plus the pre-restore one, kept 30 days); prune collects an old incomplete folder.
    let stale = ws.path("backup/scans/20200101T000000Z");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("docs.tar.zst.age"), "partial").unwrap();
    let mut ids = vec![first];
    for _ in 0..3 {
        let out = run_arca(&["backup", "--config", &cfg]);
        ok(&out);
        ids.push(last_line(&out));
    }
    let dry = String::from_utf8_lossy(&run_arca(&["prune", "--config", &cfg, "--dry-run"]).stdout)
        .into_owned();
    assert!(dry.contains("keep   last 2"), "{dry}");
    assert!(dry.contains("pre-restore, kept 30 days"), "{dry}");
    let mut left = manifests_in(&ws.path("backup"), "scans");
    left.sort();
    let kept: Vec<&String> = left.iter().filter(|id| ids.contains(id)).collect();
    assert_eq!(
        kept,
        vec![&ids[2], &ids[3]],
        "auto-prune keeps the newest two"
    );
    assert_eq!(left.len(), 3, "plus the pre-restore snapshot: {left:?}");
    assert!(!stale.exists(), "leftover folder collected");
}
