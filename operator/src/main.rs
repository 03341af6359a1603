//! `arca-operator`: reconciles BackupPolicy and RestoreRequest resources (in progress).

fn main() {
    eprintln!("arca-operator: the Kubernetes controllers are not built yet; use `arca` (compose/CLI mode)");
    std::process::exit(2);
}
