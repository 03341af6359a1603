//! `arca demo`: the main job on an embedded default. It creates a small practice — a
//! documents folder and a SQLite database — a key and a config, backs it up to a local
//! folder, and lists the result. No server is needed.

use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::Path;

use crate::cli::Failure;

/// The embedded default config; `@DIR@` and `@RECIPIENT@` are filled in.
pub const DEFAULT_CONFIG: &str = r#"# Arca demo policy: a practice's documents and its SQLite database, to a local folder.
policies:
  - name: demo
    schedule: "30 2 * * *"          # every night at 02:30
    timeZone: Europe/Zurich
    rpo: 26h
    encryption:
      ageRecipients: ["@RECIPIENT@"]
      ageIdentityFile: @DIR@/age-identity.txt
    components:
      - name: records
        sqlite: {path: @DIR@/sample/records.sqlite}
      - name: documents
        files: {path: @DIR@/sample/documents, exclude: ["*.tmp"]}
    destinations:
      - name: local
        path: @DIR@/backups
        retention: {keepLast: 7}
"#;

fn io(what: &str, e: std::io::Error) -> Failure {
    Failure {
        message: format!("demo: {what}: {e}"),
        code: 1,
    }
}

fn make_sample(dir: &Path) -> Result<(), Failure> {
    let docs = dir.join("sample/documents");
    for sub in ["letters/2026", "scans", "images/study-0001"] {
        std::fs::create_dir_all(docs.join(sub)).map_err(|e| io("creating the sample", e))?;
    }
    let files: [(&str, Vec<u8>); 5] = [
        (
            "letters/2026/referral-0001.txt",
            b"Referral letter (synthetic sample data)\n".to_vec(),
        ),
        (
            "letters/2026/report-0002.txt",
            b"Discharge report (synthetic sample data)\n".to_vec(),
        ),
        (
            "scans/consent-0001.pdf",
            b"%PDF-1.4\n% synthetic sample\n".to_vec(),
        ),
        ("images/study-0001/IM0001.dcm", {
            let mut v = vec![0u8; 128];
            v.extend_from_slice(b"DICM");
            v.extend((0..64 * 1024u32).map(|i| (i % 251) as u8));
            v
        }),
        ("scratch.tmp", b"excluded by the policy\n".to_vec()),
    ];
    for (name, data) in files {
        std::fs::write(docs.join(name), data).map_err(|e| io("writing the sample", e))?;
    }
    let link = docs.join("latest-letter");
    if std::fs::symlink_metadata(&link).is_err() {
        symlink("letters/2026/report-0002.txt", &link).map_err(|e| io("linking", e))?;
    }
    let db = dir.join("sample/records.sqlite");
    let conn = rusqlite::Connection::open(&db).map_err(|e| Failure {
        message: format!("demo: creating {}: {e}", db.display()),
        code: 1,
    })?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS patients (id INTEGER PRIMARY KEY, code TEXT NOT NULL, born TEXT);
         CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, patient INTEGER REFERENCES patients(id), at TEXT, note TEXT);
         INSERT INTO patients (code, born) SELECT 'P-' || value, '19' || (40 + value % 60) || '-01-01'
           FROM (WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 200) SELECT value FROM n)
           WHERE NOT EXISTS (SELECT 1 FROM patients);
         INSERT INTO visits (patient, at, note) SELECT 1 + value % 200, '2026-11-' || (1 + value % 28), 'synthetic visit ' || value
           FROM (WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 1000) SELECT value FROM n)
           WHERE NOT EXISTS (SELECT 1 FROM visits);",
    )
    .map_err(|e| Failure {
        message: format!("demo: filling {}: {e}", db.display()),
        code: 1,
    })?;
    Ok(())
}

/// Run the demo in `dir`.
pub async fn run(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| io("resolving the directory", e))?;
    make_sample(&dir)?;
    let key_path = dir.join("age-identity.txt");
    let recipient = if key_path.exists() {
        let ids =
            crate::keys::read_identities(&key_path.display().to_string()).map_err(|m| Failure {
                message: m,
                code: 1,
            })?;
        ids[0].to_public().to_string()
    } else {
        let (identity, recipient) = crate::keys::generate();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| io("creating the key", e))?;
        std::io::Write::write_all(&mut f, identity.expose().as_bytes())
            .map_err(|e| io("writing the key", e))?;
        recipient
    };
    let config = DEFAULT_CONFIG
        .replace("@DIR@", &dir.display().to_string())
        .replace("@RECIPIENT@", &recipient);
    let config_path = dir.join("arca.yaml");
    std::fs::write(&config_path, config).map_err(|e| io("writing the config", e))?;
    eprintln!("demo: sample data, key and config are in {}", dir.display());
    let policy = crate::config::load_policy(&config_path.display().to_string(), None)?;
    let report = crate::backup::run(&policy, &crate::backup::BackupOptions::default())
        .await
        .map_err(|e| Failure {
            message: format!("demo backup failed: {e}"),
            code: 1,
        })?;
    eprintln!(
        "demo: snapshot {} stored in {}/backups/demo/{}",
        report.snapshot,
        dir.display(),
        report.snapshot
    );
    eprintln!(
        "demo: list it with: arca snapshots --config {}",
        config_path.display()
    );
    eprintln!(
        "demo: restore by hand: age -d -i {key} {dir}/backups/demo/{id}/documents.tar.zst.age | zstd -d | tar -tv",
        key = key_path.display(),
        dir = dir.display(),
        id = report.snapshot
    );
    println!("{}", report.snapshot);
    Ok(())
}
