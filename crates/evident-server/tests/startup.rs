//! Starting and stopping `evident serve`: start-up failures (address in use, unwritable or
//! locked data directory, bad option) exit non-zero with one clear message; configuration comes
//! from `evident.toml`, then `EVIDENT_*` variables, then flags; SIGTERM and SIGINT stop it
//! cleanly with exit code 0.

mod common;

use std::net::TcpListener;
use std::path::Path;

use common::{Exited, Server};
use serde_json::json;

/// Runs `serve` with `args`/`envs` in `dir`, expecting it to exit before listening.
fn must_fail(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Exited {
    match Server::launch(dir, args, envs) {
        Ok(mut server) => {
            let (_, out, err) = server.sigterm();
            panic!("evident serve {args:?} started, but should have failed\n--- stdout\n{out}\n--- stderr\n{err}")
        }
        Err(exited) => exited,
    }
}

/// Runs `serve` with `args`/`envs` in `dir`, expecting it to listen.
fn must_start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
    match Server::launch(dir, args, envs) {
        Ok(server) => server,
        Err(e) => {
            panic!("evident serve {args:?} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}", e.code, e.stdout, e.stderr)
        }
    }
}

fn assert_failed(e: &Exited, needles: &[&str]) {
    assert!(e.code.is_some_and(|c| c != 0), "exit code {:?}, expected non-zero\n{}", e.code, e.stderr);
    for needle in needles {
        assert!(e.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", e.stderr);
    }
    assert!(!e.stdout.contains("listening"), "it must fail before listening:\n{}", e.stdout);
}

#[test]
fn an_address_in_use_is_refused_with_its_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let e = must_fail(tmp.path(), &["serve", "--data-dir", "data", "--http-addr", &addr], &[]);
    assert_failed(&e, &[&addr, "cannot listen"]);
    assert!(!tmp.path().join("data").exists(), "nothing is created when the port is taken");
}

#[test]
fn an_unwritable_data_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Root ignores permissions, but nobody can create a directory under a regular file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "not a directory").expect("write");
    let data = file.join("data");
    let data = data.to_str().expect("utf-8");
    let e = must_fail(tmp.path(), &["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0"], &[]);
    assert_failed(&e, &[data, "data directory"]);
    assert_eq!(e.stderr.trim().lines().count(), 1, "one message:\n{}", e.stderr);
}

#[test]
fn a_data_directory_in_use_by_another_server_is_refused() {
    let first = Server::start();
    first.create_topic("bank", 1);
    let data = first.dir.join("data");
    let data = data.to_str().expect("utf-8");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let e = must_fail(elsewhere.path(), &["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0"], &[]);
    assert_failed(&e, &["locked"]);
    assert!(e.stderr.contains(data), "the message names the directory:\n{}", e.stderr);
    // The first server is untouched.
    assert_eq!(first.get_ok("/health")["status"], "ok");
    assert_eq!(first.get_ok("/v1/topics/bank")["name"], "bank");
}

#[test]
fn bad_options_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = must_fail(
        tmp.path(),
        &["serve", "--data-dir", "data", "--http-addr", "127.0.0.1:0", "--fsync", "sometimes"],
        &[],
    );
    assert_failed(&e, &["sometimes", "fsync"]);
    let e = must_fail(tmp.path(), &["serve", "--data-dir", "data", "--http-addr", "nowhere"], &[]);
    assert_failed(&e, &["nowhere"]);
    let e = must_fail(
        tmp.path(),
        &["serve", "--data-dir", "data", "--http-addr", "127.0.0.1:0"],
        &[("EVIDENT_FSYNC", "often")],
    );
    assert_failed(&e, &["often"]);
    std::fs::write(tmp.path().join("evident.toml"), "data_dri = \"typo\"\n").expect("write");
    let e = must_fail(tmp.path(), &["serve", "--http-addr", "127.0.0.1:0"], &[]);
    assert_failed(&e, &["evident.toml", "data_dri"]);
}

#[test]
fn evident_toml_is_read_and_flags_win() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("evident.toml"), "http_addr = \"127.0.0.2:0\"\ndata_dir = \"from-file\"\n")
        .expect("write evident.toml");

    let mut server = must_start(tmp.path(), &["serve"], &[]);
    assert!(server.addr.starts_with("127.0.0.2:"), "the file's address: {}", server.addr);
    let out = server.stdout();
    assert!(out.contains("configuration from evident.toml"), "{out}");
    assert!(out.contains("data in from-file"), "{out}");
    server.create_topic("bank", 1);
    server.append("bank", "acc-1", &json!({"type": "AccountCreated"}));
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");
    assert!(tmp.path().join("from-file").is_dir(), "the data went to the file's data_dir");

    // A flag wins over the file; the rest still comes from the file.
    let mut server = must_start(tmp.path(), &["serve", "--http-addr", "127.0.0.3:0"], &[]);
    assert!(server.addr.starts_with("127.0.0.3:"), "the flag's address: {}", server.addr);
    assert_eq!(server.get_ok("/v1/topics/bank/streams/acc-1")["current_version"], 0, "same data directory");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");

    let mut server = must_start(tmp.path(), &["serve", "--data-dir", "from-flag"], &[]);
    assert!(server.addr.starts_with("127.0.0.2:"), "the file's address: {}", server.addr);
    let (status, body) = server.get("/v1/topics/bank");
    assert_eq!(status, 404, "a fresh data directory: {body}");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");
    assert!(tmp.path().join("from-flag").is_dir());

    // --config names another file.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, "http_addr = \"127.0.0.5:0\"\ndata_dir = \"from-other\"\n").expect("write");
    let mut server = must_start(tmp.path(), &["serve", "--config", other.to_str().expect("utf-8")], &[]);
    assert!(server.addr.starts_with("127.0.0.5:"), "--config's address: {}", server.addr);
    assert_eq!(server.get_ok("/health")["status"], "ok", "it serves on that address");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");
    assert!(tmp.path().join("from-other").is_dir());
}

#[test]
fn environment_variables_are_read_between_file_and_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = must_start(tmp.path(), &["serve", "--data-dir", "data"], &[("EVIDENT_HTTP_ADDR", "127.0.0.4:0")]);
    assert!(server.addr.starts_with("127.0.0.4:"), "the environment's address: {}", server.addr);
    assert_eq!(server.get_ok("/health")["status"], "ok", "it serves on that address");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");

    std::fs::write(tmp.path().join("evident.toml"), "http_addr = \"127.0.0.2:0\"\n").expect("write");
    let mut server = must_start(tmp.path(), &["serve", "--data-dir", "data"], &[("EVIDENT_HTTP_ADDR", "127.0.0.4:0")]);
    assert!(server.addr.starts_with("127.0.0.4:"), "the environment wins over the file: {}", server.addr);
    assert_eq!(server.get_ok("/health")["status"], "ok", "it serves on that address");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");

    let mut server = must_start(
        tmp.path(),
        &["serve", "--http-addr", "127.0.0.3:0"],
        &[("EVIDENT_HTTP_ADDR", "127.0.0.4:0"), ("EVIDENT_DATA_DIR", "env-data")],
    );
    assert!(server.addr.starts_with("127.0.0.3:"), "the flag wins over the environment: {}", server.addr);
    assert!(server.stdout().contains("data in env-data"), "{}", server.stdout());
    assert_eq!(server.get_ok("/health")["status"], "ok", "it serves on that address");
    let (code, _, err) = server.sigterm();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sigterm_stops_an_idle_server_cleanly() {
    let mut server = Server::start();
    assert_eq!(server.get_ok("/health")["status"], "ok");
    let (code, out, err) = server.sigterm();
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("evident: stopped"), "{out}");
    assert!(out.contains("shutting down"), "{out}");
}

#[test]
fn sigint_stops_a_server_cleanly_even_with_a_subscriber() {
    let mut server = Server::start();
    server.create_topic("bank", 1);
    server.append("bank", "acc-1", &json!({"type": "AccountCreated"}));
    let mut sse = common::Sse::open(&server, "/v1/subscribe?topic=bank&key=acc-1", &[]);
    assert_eq!(sse.next_event().id.as_deref(), Some("0"));
    let (code, out, err) = server.sigint();
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("evident: stopped"), "{out}");
    assert_eq!(sse.next(), None, "shutdown ends live subscriptions");

    // Everything acknowledged is there after a restart.
    let server = Server::start_in(&server.dir.clone());
    assert_eq!(server.get_ok("/v1/topics/bank/streams/acc-1")["current_version"], 0);
}

#[test]
fn a_signal_right_after_the_listening_line_still_stops_cleanly() {
    // A supervisor may stop the server the moment it reports that it listens: the shutdown
    // must be the clean one (exit 0, log closed), not the signal's default action.
    for round in 0..20 {
        for (name, sig) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
            let mut server = Server::start();
            let (code, out, err) = if sig == libc::SIGTERM { server.sigterm() } else { server.sigint() };
            assert_eq!(
                code,
                Some(0),
                "round {round}: {name} right after start ended the server with {code:?} (None: killed by the signal)\n--- stdout\n{out}\n--- stderr\n{err}"
            );
            assert!(out.contains("evident: stopped"), "round {round}, {name}: {out}");
        }
    }
}
