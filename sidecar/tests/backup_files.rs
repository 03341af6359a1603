//! Files and SQLite end to end: a tree with modes, mtimes, symlinks, long names and
//! excludes, and a live WAL-mode SQLite database, backed up to S3 and a directory, then
//! restored by hand with age, zstd, tar and sqlite3 and compared with the originals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn listing(root: &std::path::Path) -> String {
    sh(&format!(
        "cd '{}' && find . -mindepth 1 -printf '%P %y %m %Ts %s %l\\n' | sort",
        root.display()
    ))
}

#[test]
fn files_and_sqlite_restore_by_hand_to_identical_content() {
    let ws = Workspace::new();
    let tree = ws.path("storage");
    let long = "a-very-long-directory-name-that-goes-on-and-on-and-on-for-more-than-one-hundred-characters-in-total-x";
    sh(&format!(
        "set -e; mkdir -p '{t}/studies/0001' '{t}/{long}/deeper' '{t}/cache/x' '{t}/empty-dir'
         head -c 3145728 /dev/urandom > '{t}/studies/0001/IM0001.dcm'
         printf 'letter' > '{t}/{long}/deeper/letter-with-a-long-name-too.txt'
         : > '{t}/studies/empty-file'
         printf 'secret' > '{t}/studies/private.txt'; chmod 0640 '{t}/studies/private.txt'
         printf '#!/bin/sh\\n' > '{t}/run.sh'; chmod 0755 '{t}/run.sh'
         ln -s studies/0001/IM0001.dcm '{t}/current'
         ln -s /nonexistent/target '{t}/dangling'
         printf 'x' > '{t}/studies/upload.tmp'; printf 'y' > '{t}/cache/x/blob'
         find '{t}' -mindepth 1 -exec touch -h -d @1700000000 {{}} +",
        t = tree.display()
    ));
    let db = ws.path("index.sqlite");
    sh(&format!(
        "sqlite3 '{}' \"PRAGMA journal_mode=WAL; CREATE TABLE resources (id INTEGER PRIMARY KEY, uuid TEXT, blob BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 4000)
         INSERT INTO resources (uuid, blob) SELECT hex(randomblob(16)), randomblob(100) FROM n;
         CREATE INDEX r_uuid ON resources(uuid);\" >/dev/null",
        db.display()
    ));
    let dest = ws.path("backup");
    let prefix = unique("files");
    let cfg = ws.write_config(&format!(
        "policies:
  - name: orthanc
    encryption: {{ageRecipients: [\"{}\"]}}
    components:
      - name: index
        sqlite: {{path: {}}}
      - name: storage
        files: {{path: {}, exclude: [\"*.tmp\", \"cache\"]}}
    destinations:
      - name: offsite
        s3: {}
      - name: local
        path: {}
",
        ws.recipient,
        db.display(),
        tree.display(),
        s3_yaml(&prefix),
        dest.display()
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = last_line(&out);
    let m = manifest(&dest, "orthanc", &snap);
    let storage = &m["components"][1];
    assert_eq!(storage["object"], "storage.tar.zst.age");
    assert_eq!(storage["items"]["files"], 5);
    assert_eq!(storage["items"]["symlinks"], 2);
    assert_eq!(storage["items"]["bytes"], 3145728 + 6 + 6 + 10);
    assert_eq!(m["components"][0]["items"]["tables"][0]["rows"], 4000);

    // By hand, from the S3 copy: download, age -d | zstd -d | tar -x.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = s3_store(&prefix);
    let sealed = rt
        .block_on(store.get_bytes(&format!("orthanc/{snap}/storage.tar.zst.age")))
        .unwrap()
        .expect("artifact in S3");
    let sealed_path = ws.path("storage.tar.zst.age");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let tar_path = ws.path("storage.tar");
    ws.unseal_by_hand(&sealed_path, &tar_path);
    let restored = ws.path("restored");
    std::fs::create_dir_all(&restored).unwrap();
    sh(&format!(
        "tar -x -p --numeric-owner -f '{}' -C '{}'",
        tar_path.display(),
        restored.display()
    ));
    let expected: Vec<String> = listing(&tree)
        .lines()
        .filter(|l| !l.starts_with("cache") && !l.contains(".tmp "))
        .map(str::to_string)
        .collect();
    let got: Vec<String> = listing(&restored).lines().map(str::to_string).collect();
    assert_eq!(expected, got);
    sh(&format!(
        "diff -r --no-dereference -x '*.tmp' -x cache '{}' '{}'",
        tree.display(),
        restored.display()
    ));

    // SQLite: the copy passes integrity_check and dumps identically.
    let copy = ws.path("restored.sqlite");
    ws.unseal_by_hand(
        &dest
            .join("orthanc")
            .join(&snap)
            .join("index.sqlite.zst.age"),
        &copy,
    );
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'PRAGMA integrity_check'",
            copy.display()
        ))
        .trim(),
        "ok"
    );
    assert_eq!(
        sh(&format!("sqlite3 '{}' .dump", db.display())),
        sh(&format!("sqlite3 '{}' .dump", copy.display()))
    );
}

#[test]
fn the_demo_backs_up_its_sample_without_servers() {
    let ws = tempfile::tempdir().unwrap();
    let out = arca()
        .args(["demo", "--dir"])
        .arg(ws.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = last_line(&out);
    let m = manifest(&ws.path().join("backups"), "demo", &snap);
    assert_eq!(m["components"][0]["items"]["tables"][1]["rows"], 1000);
    assert_eq!(
        m["components"][1]["items"]["files"], 4,
        "the *.tmp file is excluded"
    );
}
