//! The compatibility matrix (tests/registry/compat_cases.json) through the real thing:
//! `scripts/compat-cases.py` registers every case's history under a fresh subject of a running
//! `evident serve`, sets the level, and asks both the check endpoint and registration; every
//! answer must match the expectation (which follows Confluent's documented rules).
//!
//! When the reference registry is set up (`REGISTRY_REF_HOME`, exported by scripts/test.sh
//! after `scripts/registry-ref.sh fetch`; required when `EVIDENT_REQUIRE_REGISTRY_REF=1`), the
//! same matrix runs against Apicurio Registry too, its known departures from Confluent's rules
//! pinned in tests/registry/compat_apicurio_departures.json: a new departure, or a pinned one
//! that stopped happening, fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the matrix script against `url`; panics with its report unless it agreed throughout.
fn run_matrix(url: &str, known: Option<&Path>) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/compat-cases.py")).arg(url);
    if let Some(k) = known {
        cmd.arg("--known").arg(k);
    }
    let out = cmd.output().expect("python3 runs scripts/compat-cases.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "compat-cases.py against {url} failed ({:?})\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn evident_agrees_with_every_case_at_every_level() {
    let server = Server::start();
    let report = run_matrix(&server.registry_url(""), None);
    assert!(report.contains(" 0 unexpected disagreements, 0 errors"), "{report}");
    assert!(report.contains(" 0 pinned departures"), "evident departs nowhere: {report}");
}

#[test]
fn the_reference_registry_agrees_except_where_pinned() {
    let required = std::env::var("EVIDENT_REQUIRE_REGISTRY_REF").is_ok_and(|v| v == "1");
    let home = std::env::var_os("REGISTRY_REF_HOME").map(PathBuf::from);
    let script = repo_root().join("scripts/registry-ref.sh");
    if !home.as_ref().is_some_and(|h| h.join("quarkus-run.jar").is_file()) || !script.is_file() {
        assert!(!required, "the reference registry is not set up, and EVIDENT_REQUIRE_REGISTRY_REF=1");
        eprintln!("SKIPPED the compatibility matrix against the reference registry: not set up");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Command::new("bash")
        .arg(&script)
        .args(["start", "--port", "0", "--dir"])
        .arg(dir.path())
        .output()
        .expect("registry-ref.sh start");
    let stdout = String::from_utf8_lossy(&start.stdout).into_owned();
    let url = stdout.lines().find_map(|l| l.strip_prefix("REGISTRY_REF_URL=")).map(str::to_string);
    let result = std::panic::catch_unwind(|| {
        let url = url.expect("registry-ref.sh start prints REGISTRY_REF_URL");
        run_matrix(&url, Some(&repo_root().join("tests/registry/compat_apicurio_departures.json")))
    });
    let _ = Command::new("bash").arg(&script).args(["stop", "--dir"]).arg(dir.path()).output();
    let report = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(report.contains(" 0 unexpected disagreements, 0 errors"), "{report}");
}
