//! The compose end-to-end scenario, `e2e/compose/run.sh`, as one test so the suite counts
//! it: the sidecar image is built (from a debootstrap base, cached under
//! /var/cache/arca-e2e) around the `arca` binary cargo built for this test run, `arca daemon`
//! runs beside PostgreSQL and a file-writing app on a one-minute schedule, the test waits for
//! `/api/status` to report a successful cold backup (the labelled app stopped and started
//! again), restores it with a one-off `arca restore` into a fresh PostgreSQL and a fresh
//! volume, and compares everything byte for byte.
//!
//! Needs a running Docker engine with docker-compose, and root the first time (debootstrap).
//! Without Docker this test fails with a clear message; it never skips.
//!
//! A second test checks the examples/ directory with `e2e/compose/check-examples.sh`:
//! every arca.yaml through this build's `arca check`, every compose file through compose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Panics with one clear line unless the Docker engine answers.
fn require_docker() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Err(e) => panic!(
            "compose e2e needs Docker, but `docker` could not be run ({e}): install Docker Engine \
             and docker-compose (Debian: apt-get install docker.io docker-compose)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "compose e2e needs Docker, but the engine does not answer ({}): start it \
             (systemctl start docker) or set DOCKER_HOST",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

#[test]
fn compose_daemon_cold_backup_then_restore_into_fresh_volumes() {
    require_docker();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("e2e/compose/run.sh");
    // The binary cargo built for this run (ARCA_BIN may name another, e.g. a release build).
    let bin = std::env::var("ARCA_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_arca").to_string());
    // Progress goes to stderr line by line (visible with --no-capture); the last line is
    // the verdict, kept for the panic message.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"exec "$0" 2>&1"#)
        .arg(&script)
        .env("ARCA_BIN", &bin)
        // Its own tag, so a developer's `arca:dev` (images/build.sh) is left alone.
        .env("ARCA_IMAGE", "arca:e2e-test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let mut last = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.unwrap_or_default();
        eprintln!("{line}");
        if !line.trim().is_empty() {
            last = line;
        }
    }
    let status = child.wait().expect("wait for run.sh");
    assert!(
        status.success(),
        "e2e/compose/run.sh failed ({status}): {last}"
    );
    assert!(
        last.starts_with("compose e2e: ok"),
        "e2e/compose/run.sh exited 0 without its ok line; last line: {last}"
    );
}

#[test]
fn examples_are_valid_arca_configs_and_compose_files() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("e2e/compose/check-examples.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("ARCA_BIN", env!("CARGO_BIN_EXE_arca"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "e2e/compose/check-examples.sh failed: {}",
        stderr.lines().last().unwrap_or("(no output)")
    );
}
