//! Write the CRD manifests: `crdgen [DIR]`, or `crdgen --check [DIR]` to fail when the
//! committed files are out of date. Without DIR: the workspace's `crds/` and the byte-equal
//! copies the Helm chart (`charts/arca/crds/`) and the plain install
//! (`manifests/install/10-crd-*.yaml`) ship.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // (folder, file name prefix)
    let mut targets = vec![
        (root.join("crds"), ""),
        (root.join("charts/arca/crds"), ""),
        (root.join("manifests/install"), "10-crd-"),
    ];
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]  (default: crds/, charts/arca/crds/, manifests/install/)");
                return ExitCode::SUCCESS;
            }
            other => targets = vec![(PathBuf::from(other), "")],
        }
    }
    let manifests = match arca_operator::crds::manifests() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = false;
    for (dir, prefix) in &targets {
        for (file, yaml) in &manifests {
            let path = dir.join(format!("{prefix}{file}"));
            if check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                    eprintln!(
                        "crdgen: {} is out of date: run `cargo run -p arca-operator --bin crdgen`",
                        path.display()
                    );
                    stale = true;
                }
            } else if let Err(e) =
                std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, yaml))
            {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            } else {
                println!("{}", path.display());
            }
        }
    }
    if stale {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
