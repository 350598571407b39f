//! Goal: the schema registry keeps what it acknowledged through `kill -9`: every acknowledged
//! registration (id and version), soft delete, permanent delete and compatibility config
//! survives each restart, and no schema id is ever given to other content, nor reused after a
//! permanent delete.
//!
//! Method: rounds of the real binary on one data directory; in each, a client thread
//! registers, deletes and configures over the registry API as fast as it can while the test
//! kills the server with SIGKILL after a random delay; the operations answered 200 are the
//! acknowledged ones. After each restart every acknowledged effect is checked, and every id
//! ever seen must still hold its content (or be gone after an acknowledged permanent delete).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use rand::Rng;
use serde_json::{json, Value};

const ROUNDS: usize = 6;

#[derive(Default, Debug)]
struct Acked {
    /// (subject, version) → (id, schema text), registrations answered 200.
    versions: BTreeMap<(String, i64), (i64, String)>,
    /// Soft deletes answered 200.
    soft: Vec<(String, i64)>,
    /// Permanent deletes answered 200: (subject, version, id).
    hard: Vec<(String, i64, i64)>,
    /// Deletes sent, answered or not (an unanswered one may have landed): soft, permanent.
    soft_sent: Vec<(String, i64)>,
    hard_sent: Vec<(String, i64, i64)>,
    /// Config subject → the levels set, in order; the last acknowledged one must hold unless
    /// a later unacknowledged attempt (recorded with `false`) may have landed.
    configs: BTreeMap<String, Vec<(String, bool)>>,
    /// Every id seen, with its content.
    ids: BTreeMap<i64, String>,
    /// Counter making every schema unique across rounds.
    next: u64,
}

fn schema_text(n: u64) -> String {
    format!(r#"{{"type":"record","name":"R{n}","fields":[{{"name":"f{n}","type":"string"}}]}}"#)
}

/// One client session: operations until the server dies.
fn client(url: String, acked: Arc<Mutex<Acked>>) {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| -> Option<(u16, Value)> {
        let mut req = http.request(method, format!("{url}{path}"));
        if let Some(b) = body {
            req = req.header("content-type", "application/vnd.schemaregistry.v1+json").body(b.to_string());
        }
        let resp = req.send().ok()?;
        let status = resp.status().as_u16();
        let value = resp.json::<Value>().ok()?;
        Some((status, value))
    };
    let levels = ["NONE", "FULL", "FORWARD", "BACKWARD_TRANSITIVE"];
    let mut step = 0u64;
    loop {
        step += 1;
        match step % 4 {
            0 | 1 => {
                let n = {
                    let mut a = acked.lock().expect("lock");
                    a.next += 1;
                    a.next
                };
                let subject = format!("s{}", n % 4);
                let text = schema_text(n);
                let Some((status, answer)) = send(
                    reqwest::Method::POST,
                    &format!("/subjects/{subject}/versions"),
                    Some(json!({ "schema": text })),
                ) else {
                    return;
                };
                assert_eq!(status, 200, "register: {answer}");
                let id = answer["id"].as_i64().expect("id");
                // The version: look it up (a lookup only reads).
                let Some((status, found)) =
                    send(reqwest::Method::POST, &format!("/subjects/{subject}"), Some(json!({ "schema": text })))
                else {
                    // The id is acknowledged even if the version lookup died.
                    let mut a = acked.lock().expect("lock");
                    assert!(a.ids.insert(id, text).is_none(), "id {id} given twice");
                    return;
                };
                assert_eq!(status, 200, "lookup: {found}");
                let version = found["version"].as_i64().expect("version");
                let mut a = acked.lock().expect("lock");
                if let Some(other) = a.ids.insert(id, text.clone()) {
                    panic!("id {id} given to {text} already held {other}");
                }
                // A permanent delete of a subject's highest version frees its number, as in
                // Confluent: a version given again starts a new life, and the soft deletes said
                // of the old one no longer apply (permanent ones are matched by id).
                let key = (subject, version);
                a.soft.retain(|k| k != &key);
                a.soft_sent.retain(|k| k != &key);
                a.versions.insert(key, (id, text));
            }
            2 => {
                // Soft-delete (and every other time permanently delete) an acknowledged live version.
                let target = {
                    let a = acked.lock().expect("lock");
                    // Not one whose soft delete was sent: an unanswered one may have landed.
                    a.versions
                        .iter()
                        .find(|(k, _)| !a.soft_sent.contains(k))
                        .map(|((s, v), (id, _))| (s.clone(), *v, *id))
                };
                let Some((subject, version, id)) = target else { continue };
                let path = format!("/subjects/{subject}/versions/{version}");
                acked.lock().expect("lock").soft_sent.push((subject.clone(), version));
                let Some((status, answer)) = send(reqwest::Method::DELETE, &path, None) else { return };
                assert_eq!(status, 200, "soft delete {path}: {answer}");
                acked.lock().expect("lock").soft.push((subject.clone(), version));
                if step % 8 == 2 {
                    acked.lock().expect("lock").hard_sent.push((subject.clone(), version, id));
                    let Some((status, answer)) = send(reqwest::Method::DELETE, &format!("{path}?permanent=true"), None)
                    else {
                        return;
                    };
                    assert_eq!(status, 200, "permanent delete {path}: {answer}");
                    acked.lock().expect("lock").hard.push((subject, version, id));
                }
            }
            _ => {
                let subject = format!("cfg{}", step % 3);
                let level = levels[(step / 4 % levels.len() as u64) as usize];
                acked
                    .lock()
                    .expect("lock")
                    .configs
                    .entry(subject.clone())
                    .or_default()
                    .push((level.to_string(), false));
                let Some((status, answer)) =
                    send(reqwest::Method::PUT, &format!("/config/{subject}"), Some(json!({ "compatibility": level })))
                else {
                    return;
                };
                assert_eq!(status, 200, "config: {answer}");
                let mut a = acked.lock().expect("lock");
                if let Some(last) = a.configs.get_mut(&subject).and_then(|v| v.last_mut()) {
                    last.1 = true;
                }
            }
        }
    }
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (status, _, body) = server.registry_request("GET", path, None, None);
    (status, body)
}

fn verify(server: &Server, acked: &Acked, round: usize) {
    for ((subject, version), (id, text)) in &acked.versions {
        // Permanent deletes of this life of the version (its number may have had earlier ones).
        let maybe_hard = acked.hard_sent.iter().any(|(s, v, h)| s == subject && v == version && h == id);
        let soft = acked.soft.iter().any(|(s, v)| s == subject && v == version);
        let maybe_soft = acked.soft_sent.iter().any(|(s, v)| s == subject && v == version);
        let (status, body) = get(server, &format!("/subjects/{subject}/versions/{version}?deleted=true"));
        if let Some((_, _, deleted_id)) = acked.hard.iter().find(|(s, v, h)| s == subject && v == version && h == id) {
            // Gone, or its number given to a registration whose answer the kill cut off: the
            // deleted schema itself never comes back under it.
            assert!(
                status == 404 || (status == 200 && body["id"] != json!(deleted_id)),
                "round {round}: {subject} v{version} (id {deleted_id}) was permanently deleted: {status} {body}"
            );
            continue;
        }
        if maybe_hard && status == 404 {
            continue;
        }
        assert_eq!(status, 200, "round {round}: acknowledged {subject} v{version} lost: {body}");
        assert_eq!((&body["id"], body["schema"].as_str()), (&json!(id), Some(text.as_str())), "round {round}");
        assert_eq!(body["id"], json!(id));
        let (live, _) = get(server, &format!("/subjects/{subject}/versions/{version}"));
        if soft {
            assert_eq!(live, 404, "round {round}: soft delete of {subject} v{version} not kept");
        } else if !maybe_soft {
            assert_eq!(live, 200, "round {round}: {subject} v{version} deleted without being asked");
        }
    }
    for (id, text) in &acked.ids {
        let hard = acked.hard.iter().any(|(_, _, h)| h == id);
        let maybe_hard = acked.hard_sent.iter().any(|(_, _, h)| h == id);
        let (status, body) = get(server, &format!("/schemas/ids/{id}"));
        if maybe_hard && !hard && status == 404 {
            continue;
        }
        if hard {
            assert_eq!(status, 404, "round {round}: id {id} survived its permanent delete");
        } else {
            assert_eq!((status, body["schema"].as_str()), (200, Some(text.as_str())), "round {round}: id {id}");
        }
    }
    for (subject, attempts) in &acked.configs {
        let (status, body) = get(server, &format!("/config/{subject}"));
        let Some(last_acked) = attempts.iter().rposition(|(_, ok)| *ok) else { continue };
        // The acknowledged level, or a later attempt that landed without its answer.
        let allowed: Vec<&str> = attempts[last_acked..].iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(status, 200, "round {round}: config of {subject} lost: {body}");
        let level = body["compatibilityLevel"].as_str().expect("level");
        assert!(allowed.contains(&level), "round {round}: {subject} is {level}, acknowledged {allowed:?}");
    }
}

#[test]
fn acknowledged_registry_changes_survive_kill_9_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().expect("tmp");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut server = Server::start_in(dir.path());
    // Compatibility off globally, so that unrelated schemas may follow each other.
    let (status, _, _) =
        server.registry_request("PUT", "/config", Some(&json!({"compatibility": "NONE"}).to_string()), None);
    assert_eq!(status, 200);
    let mut rng = rand::thread_rng();
    for round in 0..ROUNDS {
        let url = server.registry_url("");
        let worker = {
            let acked = acked.clone();
            std::thread::spawn(move || client(url, acked))
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        server.kill9();
        worker.join().expect("client thread");
        server = Server::start_in(dir.path());
        let a = acked.lock().expect("lock");
        verify(&server, &a, round);
        // New content after the restart gets an id above every id ever acknowledged.
        let max_seen = a.ids.keys().next_back().copied().unwrap_or(0);
        drop(a);
        let probe = json!({ "schema": schema_text(1_000_000 + round as u64) }).to_string();
        let (status, _, answer) = server.registry_request("POST", "/subjects/probe/versions", Some(&probe), None);
        assert_eq!(status, 200, "{answer}");
        let id = answer["id"].as_i64().expect("id");
        assert!(id > max_seen, "round {round}: id {id} given after restart, but {max_seen} was already acknowledged");
        acked.lock().expect("lock").ids.insert(id, schema_text(1_000_000 + round as u64));
    }
    let a = acked.lock().expect("lock");
    assert!(a.versions.len() >= ROUNDS, "too few acknowledged registrations to mean anything: {}", a.versions.len());
    assert!(!a.soft.is_empty() && !a.hard.is_empty(), "the loop never deleted: {:?} {:?}", a.soft, a.hard);
}
