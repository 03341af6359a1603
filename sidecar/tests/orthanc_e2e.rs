//! Orthanc end to end, cold: a real Orthanc (Debian's `/usr/sbin/Orthanc`) on its own
//! loopback port, with its SQLite index and storage area in a temp dir, is filled with
//! DICOM instances made by dcmtk's `dump2dcm`, stopped, backed up with `arca backup`,
//! wiped, restored with `arca restore`, started again and compared instance by instance,
//! byte for byte. Needs `Orthanc`, `dump2dcm` (dcmtk), `curl` and `sqlite3`
//! (`scripts/services.sh up` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const ORTHANC_BIN: &str = "/usr/sbin/Orthanc";

/// The DICOM hierarchy made for the tests, one entry per series:
/// (patient, study, instances in the series). 3 patients, 5 studies, 7 series, 12 instances.
const SERIES: &[(usize, usize, usize)] = &[
    (0, 0, 2),
    (0, 0, 2),
    (0, 1, 1),
    (1, 2, 3),
    (2, 3, 1),
    (2, 3, 1),
    (2, 4, 2),
];
const PATIENTS: u64 = 3;
const STUDIES: u64 = 5;
const SERIES_COUNT: u64 = 7;
const INSTANCES: u64 = 12;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh UID root under `2.25` (UUID-derived UIDs), so every run makes new instances.
fn uid_root() -> String {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Writes one small secondary-capture DICOM file per instance of `SERIES` into `dir`
/// (via `dump2dcm` from a text dump with a distinct 16x16 8-bit image each).
fn make_dicoms(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let root = uid_root();
    let mut files = Vec::new();
    let mut n = 0usize;
    for (series, &(patient, study, count)) in SERIES.iter().enumerate() {
        for instance in 0..count {
            n += 1;
            let pixels: Vec<String> = (0..256usize)
                .map(|k| format!("{:02x}", (k * 7 + n * 31) % 256))
                .collect();
            let dump = format!(
                "(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [{root}.{study}.{series}.{instance}]
(0008,0020) DA [2024010{d}]
(0008,0060) CS [OT]
(0008,0064) CS [WSD]
(0008,1030) LO [Arca e2e study {study}]
(0008,103e) LO [Arca e2e series {series}]
(0010,0010) PN [Test^Patient{patient}]
(0010,0020) LO [ARCA-E2E-{patient}]
(0010,0030) DA [1970010{d}]
(0010,0040) CS [O]
(0020,000d) UI [{root}.{study}]
(0020,000e) UI [{root}.{study}.{series}]
(0020,0010) SH [{study}]
(0020,0011) IS [{series}]
(0020,0013) IS [{instance}]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0010) US 16
(0028,0011) US 16
(0028,0100) US 8
(0028,0101) US 8
(0028,0102) US 7
(0028,0103) US 0
(7fe0,0010) OB {px}
",
                d = 1 + study % 9,
                px = pixels.join("\\")
            );
            let txt = dir.join(format!("im{n:02}.txt"));
            let dcm = dir.join(format!("im{n:02}.dcm"));
            std::fs::write(&txt, dump).unwrap();
            sh(&format!(
                "dump2dcm -q +te '{}' '{}'",
                txt.display(),
                dcm.display()
            ));
            files.push(dcm);
        }
    }
    assert_eq!(files.len() as u64, INSTANCES);
    files
}

/// A loopback port free right now (the kernel's pick for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One Orthanc process of this test, with its own config; stopped on drop (also on panic).
struct Orthanc {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Orthanc {
    /// Starts Orthanc on `storage` and `index` (directories) and waits until `GET /system`
    /// answers with this instance's own name. Retries on another port when the process
    /// dies before it is ready (e.g. someone took the port in between).
    fn start(dir: &Path, storage: &Path, index: &Path) -> Orthanc {
        let mut last = String::new();
        for _attempt in 0..3 {
            let name = unique("arca-e2e");
            let port = free_port();
            let cfg = dir.join(format!("{name}.json"));
            let config = serde_json::json!({
                "Name": name,
                "StorageDirectory": storage,
                "IndexDirectory": index,
                "HttpServerEnabled": true,
                "HttpPort": port,
                "RemoteAccessAllowed": false,
                "AuthenticationEnabled": false,
                "DicomServerEnabled": false,
                "DicomPort": free_port(),
                "StorageCompression": false,
                "SaveJobs": false,
                "Plugins": [],
                "LuaScripts": []
            });
            std::fs::write(&cfg, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
            let log = dir.join(format!("{name}.log"));
            let out = File::create(&log).unwrap();
            let child = Command::new(ORTHANC_BIN)
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {ORTHANC_BIN} ({e}): install Debian's orthanc package")
                });
            let mut o = Orthanc {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            };
            match o.wait_ready(&name, Duration::from_secs(30)) {
                Ok(()) => return o,
                Err(e) => last = e,
            }
        }
        panic!("Orthanc did not start: {last}");
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls `GET /system` until it names this instance; Err when the process exits first.
    fn wait_ready(&mut self, name: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "exited with {status} before it was ready; log:\n{}",
                    self.log_tail()
                ));
            }
            let out = curl(&["-m", "2", &format!("{}/system", self.base)]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if v["Name"] == name {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc at {} not ready after {limit:?}; log:\n{}",
                self.base,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Vec<u8> {
        let out = curl(&[&format!("{}{path}", self.base)]);
        assert!(
            out.status.success(),
            "GET {path} failed: {}",
            stderr_of(&out)
        );
        out.stdout
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_slice(&self.get(path)).expect("Orthanc answers JSON")
    }

    /// POST a file (or nothing) and parse the JSON answer.
    fn post(&self, path: &str, file: Option<&Path>) -> serde_json::Value {
        let data = file.map_or_else(|| "@/dev/null".to_string(), |f| format!("@{}", f.display()));
        let out = curl(&[
            "-X",
            "POST",
            "-H",
            "Expect:",
            "--data-binary",
            &data,
            &format!("{}{path}", self.base),
        ]);
        assert!(
            out.status.success(),
            "POST {path} failed: {}",
            stderr_of(&out)
        );
        serde_json::from_slice(&out.stdout).expect("Orthanc answers JSON")
    }

    /// (patients, studies, series, instances) from `GET /statistics`.
    fn counts(&self) -> (u64, u64, u64, u64) {
        let s = self.get_json("/statistics");
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
        (
            n("CountPatients"),
            n("CountStudies"),
            n("CountSeries"),
            n("CountInstances"),
        )
    }

    /// Instance id → sha256 of `GET /instances/{id}/file`, for every instance Orthanc lists.
    fn instance_hashes(&self) -> BTreeMap<String, String> {
        let ids = self.get_json("/instances");
        ids.as_array()
            .expect("instance list")
            .iter()
            .map(|id| {
                let id = id.as_str().expect("instance id").to_string();
                let hash = sha256_hex(&self.get(&format!("/instances/{id}/file")));
                (id, hash)
            })
            .collect()
    }

    /// Graceful stop (SIGTERM, Orthanc flushes and closes its index); asserts a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        sh(&format!("kill -TERM {pid}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc (pid {pid}) did not stop within 30s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "Orthanc exited with {status}; log:\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-fsS", "--noproxy", "*"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (apt-get install curl)")
}

/// Every entry under `root`, sorted: path, type, mode, size, mtime and, for files, the
/// content's sha256. `exact`: also directories, and mtimes to the nanosecond (to show that
/// nothing was touched); otherwise files only, with mtimes in whole seconds (what a tar
/// keeps; directory mtimes change as files are extracted into them).
fn tree_state(root: &Path, exact: bool) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, exact: bool, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mtime = if exact {
                format!("{}.{:09}", m.mtime(), m.mtime_nsec())
            } else {
                m.mtime().to_string()
            };
            if m.is_dir() {
                if exact {
                    out.push(format!("{rel} d {:o} {mtime}", m.mode()));
                }
                walk(root, &p, exact, out);
            } else {
                let hash = if m.is_file() {
                    sha256_hex(&std::fs::read(&p).unwrap())
                } else {
                    String::new()
                };
                out.push(format!(
                    "{rel} f {:o} {} {mtime} {hash}",
                    m.mode(),
                    m.size()
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, exact, &mut out);
    out.sort();
    out
}

fn count_files(root: &Path) -> u64 {
    tree_state(root, false).len() as u64
}

/// A workspace with Orthanc's data (filled, Orthanc stopped) and one arca backup of it.
struct Fixture {
    ws: Workspace,
    storage: PathBuf,
    index_dir: PathBuf,
    dest: PathBuf,
    config: String,
    snapshot: String,
    /// Instance id → sha256 of what Orthanc served before the backup.
    originals: BTreeMap<String, String>,
}

impl Fixture {
    fn index_file(&self) -> PathBuf {
        self.index_dir.join("index")
    }
}

fn filled_and_backed_up() -> Fixture {
    let ws = Workspace::new();
    let storage = ws.path("orthanc/storage");
    let index_dir = ws.path("orthanc/index");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::create_dir_all(&index_dir).unwrap();
    let dicoms = make_dicoms(&ws.path("dicom"));

    // Fill Orthanc over REST and record what it serves back for every instance.
    let orthanc = Orthanc::start(ws.dir.path(), &storage, &index_dir);
    assert_eq!(orthanc.counts(), (0, 0, 0, 0), "a fresh Orthanc is empty");
    let mut uploaded = BTreeMap::new();
    for f in &dicoms {
        let r = orthanc.post("/instances", Some(f));
        assert_eq!(r["Status"], "Success", "upload of {}: {r}", f.display());
        let id = r["ID"].as_str().expect("instance ID").to_string();
        uploaded.insert(id, sha256_hex(&std::fs::read(f).unwrap()));
    }
    assert_eq!(
        orthanc.counts(),
        (PATIENTS, STUDIES, SERIES_COUNT, INSTANCES)
    );
    let originals = orthanc.instance_hashes();
    assert_eq!(
        originals, uploaded,
        "Orthanc lists exactly the uploaded instances and serves each file as uploaded"
    );
    orthanc.stop();

    // Cold backup of the stopped Orthanc: its SQLite index and its storage area.
    let dest = ws.path("backup");
    let config = ws.write_config(&format!(
        "policies:
  - name: orthanc
    encryption: {{ageRecipients: [\"{}\"], ageIdentityFile: {}}}
    components:
      - name: index
        sqlite: {{path: {}}}
      - name: storage
        files: {{path: {}}}
    destinations:
      - name: local
        path: {}
",
        ws.recipient,
        ws.identity.display(),
        index_dir.join("index").display(),
        storage.display(),
        dest.display()
    ));
    let out = run_arca(&["backup", "--config", &config]);
    assert!(out.status.success(), "arca backup: {}", stderr_of(&out));
    let snapshot = last_line(&out);
    let m = manifest(&dest, "orthanc", &snapshot);
    let (index, files) = (&m["components"][0], &m["components"][1]);
    assert_eq!(index["name"], "index");
    assert_eq!(index["kind"], "sqlite");
    assert_eq!(index["object"], "index.sqlite.zst.age");
    let resources = index["items"]["tables"]
        .as_array()
        .expect("tables counted")
        .iter()
        .find(|t| t["name"] == "Resources")
        .unwrap_or_else(|| panic!("no Resources table in {}", index["items"]));
    assert_eq!(
        resources["rows"],
        PATIENTS + STUDIES + SERIES_COUNT + INSTANCES,
        "one Resources row per patient, study, series and instance"
    );
    assert_eq!(files["name"], "storage");
    assert_eq!(files["kind"], "files");
    assert_eq!(files["object"], "storage.tar.zst.age");
    let on_disk = count_files(&storage);
    assert!(
        on_disk >= INSTANCES,
        "Orthanc stored {on_disk} files for {INSTANCES} instances"
    );
    assert_eq!(files["items"]["files"], on_disk);

    Fixture {
        ws,
        storage,
        index_dir,
        dest,
        config,
        snapshot,
        originals,
    }
}

#[test]
fn orthanc_cold_backup_and_restore_round_trips_every_instance() {
    let fx = filled_and_backed_up();
    let storage_before = tree_state(&fx.storage, false);
    let index_dump = sh(&format!("sqlite3 '{}' .dump", fx.index_file().display()));
    assert!(index_dump.contains("INSERT INTO Resources"), "{index_dump}");

    // Lose everything: empty storage and index directories.
    for d in [&fx.storage, &fx.index_dir] {
        std::fs::remove_dir_all(d).unwrap();
        std::fs::create_dir_all(d).unwrap();
    }
    assert_eq!(count_files(&fx.storage), 0);
    assert!(!fx.index_file().exists());

    // Restore every component to its original path.
    let out = run_arca(&[
        "restore",
        "--config",
        &fx.config,
        "--policy",
        "orthanc",
        "--snapshot",
        "latest",
    ]);
    assert!(
        out.status.success(),
        "arca restore --policy orthanc --snapshot latest (of {}) failed with {}:\n{}",
        fx.snapshot,
        out.status,
        stderr_of(&out)
    );

    // The files come back byte for byte (with modes and mtimes), the index row for row.
    assert_eq!(tree_state(&fx.storage, false), storage_before);
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'PRAGMA integrity_check'",
            fx.index_file().display()
        ))
        .trim(),
        "ok"
    );
    assert_eq!(
        sh(&format!("sqlite3 '{}' .dump", fx.index_file().display())),
        index_dump
    );

    // Orthanc on the restored data serves every instance exactly as before.
    let orthanc = Orthanc::start(fx.ws.dir.path(), &fx.storage, &fx.index_dir);
    assert_eq!(
        orthanc.counts(),
        (PATIENTS, STUDIES, SERIES_COUNT, INSTANCES)
    );
    let restored = orthanc.instance_hashes();
    assert_eq!(restored.len() as u64, INSTANCES);
    assert_eq!(restored, fx.originals, "instance ids and file sha256s");
    for id in restored.keys() {
        // Orthanc checks the MD5 its index holds against the stored attachment.
        orthanc.post(
            &format!("/instances/{id}/attachments/dicom/verify-md5"),
            None,
        );
    }
    orthanc.stop();
}

#[test]
fn orthanc_restore_refuses_a_non_empty_target_without_force() {
    let fx = filled_and_backed_up();
    let before = (
        tree_state(&fx.storage, true),
        tree_state(&fx.index_dir, true),
    );
    assert!(before.0.len() as u64 >= INSTANCES && !before.1.is_empty());

    for only in [None, Some("storage"), Some("index")] {
        let mut args: Vec<&str> = vec![
            "restore",
            "--config",
            &fx.config,
            "--policy",
            "orthanc",
            "--snapshot",
            "latest",
        ];
        if let Some(c) = only {
            args.extend(["--component", c]);
        }
        let out = run_arca(&args);
        assert!(
            !out.status.success(),
            "arca {} restored over live data without --force",
            args.join(" ")
        );
        let line = error_line(&out);
        assert!(
            line.contains("--force"),
            "the error should say --force overrides it: {line}"
        );
        assert_eq!(
            (
                tree_state(&fx.storage, true),
                tree_state(&fx.index_dir, true)
            ),
            before,
            "live files changed by the refused arca {}",
            args.join(" ")
        );
    }
    // The refused restores left the snapshot in place.
    assert!(manifests_in(&fx.dest, "orthanc").contains(&fx.snapshot));
}
