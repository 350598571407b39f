//! The library's registry integration (`evident` feature `schemas`) against a real schema
//! registry and a real store: an aggregate's event enum registered at start-up (one subject per
//! event type, `<topic>-<EventType>`), an incompatible change refused at start-up with nothing
//! registered, appended events stamped with their type's registered version, and an upcaster
//! keyed by the registered version applied when older events are read.
//!
//! Method: one `evident serve` is both the store (the library's `HttpBackend`) and the registry
//! (its `--registry-addr` listener). With `EVIDENT_TEST_REGISTRY_URL` set, the registry is that
//! one instead (a reference such as Apicurio's ccompat API); topics get a per-run suffix so a
//! shared registry can be reused.

mod common;

use std::net::TcpListener;
use std::sync::Arc;

use common::Server;
use evident::backend::StreamQuery;
use evident::event::SCHEMA_VERSION_HEADER;
use evident::{Aggregate, Backend, Error, EventSchemas, HttpBackend, RegistryClient, Repository, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The order aggregate as first deployed.
mod v1 {
    use evident::schemars::{self, JsonSchema};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub enum OrderEvent {
        Placed { sku: String, qty: u32 },
        Shipped,
    }
    impl evident::DomainEvent for OrderEvent {}
}

/// The second deployment: `Placed` gains an optional `note` (a compatible change under
/// BACKWARD: the content model is closed, the new property optional), which an upcaster fills
/// in for events stored at the first registered version.
mod v2 {
    use evident::schemars::{self, JsonSchema};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub enum OrderEvent {
        Placed { sku: String, qty: u32, note: Option<String> },
        Shipped,
    }
    impl evident::DomainEvent for OrderEvent {}
}

/// A deployment that must not start: `qty` became text (old events cannot be read as the new
/// type), and a new event type comes along, which must not be registered either.
mod breaking {
    use evident::schemars::{self, JsonSchema};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub enum OrderEvent {
        Placed { sku: String, qty: String },
        Shipped,
        Returned { reason: String },
    }
    impl evident::DomainEvent for OrderEvent {}
}

/// An order on the first deployment: its lines as placed (with their note) and whether it
/// shipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OrderV1 {
    placed: Vec<(String, u32, Option<String>)>,
    shipped: bool,
}

impl Aggregate for OrderV1 {
    type Command = (String, u32);
    type Event = v1::OrderEvent;
    type Error = String;
    const TOPIC: &'static str = "orders";

    fn handle(&self, (sku, qty): &Self::Command) -> Result<Vec<Self::Event>, String> {
        Ok(vec![v1::OrderEvent::Placed { sku: sku.clone(), qty: *qty }])
    }

    fn apply(&mut self, event: &Self::Event) {
        match event {
            v1::OrderEvent::Placed { sku, qty } => self.placed.push((sku.clone(), *qty, None)),
            v1::OrderEvent::Shipped => self.shipped = true,
        }
    }
}

/// The same order on the second deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OrderV2 {
    placed: Vec<(String, u32, Option<String>)>,
    shipped: bool,
}

impl Aggregate for OrderV2 {
    type Command = (String, u32);
    type Event = v2::OrderEvent;
    type Error = String;
    const TOPIC: &'static str = "orders";

    fn handle(&self, (sku, qty): &Self::Command) -> Result<Vec<Self::Event>, String> {
        Ok(vec![v2::OrderEvent::Placed { sku: sku.clone(), qty: *qty, note: Some("new".into()) }])
    }

    fn apply(&mut self, event: &Self::Event) {
        match event {
            v2::OrderEvent::Placed { sku, qty, note } => self.placed.push((sku.clone(), *qty, note.clone())),
            v2::OrderEvent::Shipped => self.shipped = true,
        }
    }
}

/// The store and the registry.
struct World {
    server: Server,
    registry_url: String,
    topic: String,
}

impl World {
    fn start() -> World {
        let suffix = format!("{:08x}", rand::random::<u32>());
        let topic = format!("orders-{suffix}");
        if let Ok(url) = std::env::var("EVIDENT_TEST_REGISTRY_URL") {
            return World { server: Server::start(), registry_url: url, topic };
        }
        let server = Server::start();
        let registry_url = server.registry_url("");
        World { server, registry_url, topic }
    }

    fn subject(&self, event_type: &str) -> String {
        EventSchemas::subject(&self.topic, event_type)
    }

    /// `GET` on the registry (blocking, outside the runtime's worker threads).
    fn registry_get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}/{path}", self.registry_url.trim_end_matches('/'));
        let response = reqwest::blocking::get(&url).expect("registry GET");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Sets a subject's compatibility level.
    fn set_level(&self, subject: &str, level: &str) {
        let url = format!("{}/config/{subject}", self.registry_url.trim_end_matches('/'));
        let response = reqwest::blocking::Client::new()
            .put(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(json!({"compatibility": level}).to_string())
            .send()
            .expect("registry PUT");
        assert!(response.status().is_success(), "{url}: {}", response.text().unwrap_or_default());
    }
}

/// The schema version header of each stored event of `key`, in order.
async fn stored_versions(backend: &dyn Backend, topic: &str, key: &str) -> Vec<Option<String>> {
    let page = backend.read_stream(topic, key, &StreamQuery::default()).await.expect("read");
    page.events.iter().map(|e| e.header_str(SCHEMA_VERSION_HEADER).map(str::to_owned)).collect()
}

#[test]
fn registered_versions_stamp_appends_and_key_upcasters() {
    let world = World::start();
    let topic = world.topic.clone();
    let client = RegistryClient::new(&world.registry_url).expect("registry client");
    let backend: Arc<dyn Backend> = Arc::new(HttpBackend::new(world.server.base()).expect("backend"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");

    // First deployment: both event types registered at version 1, one subject each.
    let schemas_v1 = runtime.block_on(EventSchemas::register::<v1::OrderEvent>(&client, &topic)).expect("v1");
    assert_eq!((schemas_v1.version("Placed"), schemas_v1.version("Shipped")), (Some(1), Some(1)));
    assert_eq!(schemas_v1.get("Placed").expect("Placed").subject, world.subject("Placed"));
    let (status, registered) = world.registry_get(&format!("subjects/{}/versions/1", world.subject("Placed")));
    assert_eq!(status, 200, "{registered}");
    assert_eq!(registered["schemaType"], "JSON");
    let schema: Value = serde_json::from_str(registered["schema"].as_str().expect("schema")).expect("json");
    assert_eq!(schema["properties"]["qty"]["type"], "integer", "{schema}");
    // Registering the same enum again (a restart) changes nothing.
    let again = runtime.block_on(EventSchemas::register::<v1::OrderEvent>(&client, &topic)).expect("again");
    assert_eq!(again, schemas_v1);
    for event_type in ["Placed", "Shipped"] {
        world.set_level(&world.subject(event_type), "BACKWARD");
    }

    // Appends carry the registered version.
    let orders_v1 = Repository::<OrderV1>::new(backend.clone()).with_topic(&topic).with_schemas(schemas_v1);
    runtime.block_on(orders_v1.execute("o-1", &("apple".into(), 3))).expect("place v1");
    assert_eq!(runtime.block_on(stored_versions(backend.as_ref(), &topic, "o-1")), [Some("1".to_owned())]);

    // An incompatible deployment is refused at start-up and registers nothing, not even the
    // new, compatible event type.
    let refused = runtime.block_on(EventSchemas::register::<breaking::OrderEvent>(&client, &topic));
    match refused {
        Err(Error::Schema(why)) => {
            assert!(why.contains(&format!("Placed (subject {})", world.subject("Placed"))), "{why}");
            assert!(!why.contains("Shipped ("), "Shipped did not change: {why}");
        }
        other => panic!("an incompatible schema must be refused, got {other:?}"),
    }
    let (status, versions) = world.registry_get(&format!("subjects/{}/versions", world.subject("Placed")));
    assert_eq!((status, versions), (200, json!([1])));
    let (status, _) = world.registry_get(&format!("subjects/{}/versions", world.subject("Returned")));
    assert_eq!(status, 404, "Returned must not have been registered");

    // Second deployment: Placed moves to version 2, Shipped stays at 1; the upcaster keyed by
    // registered version 1 fills in the note for events stored at version 1.
    let schemas_v2 = runtime.block_on(EventSchemas::register::<v2::OrderEvent>(&client, &topic)).expect("v2");
    assert_eq!((schemas_v2.version("Placed"), schemas_v2.version("Shipped")), (Some(2), Some(1)));
    let upcasters = Upcasters::new().register("Placed", 1, |mut payload| {
        payload["note"] = json!("from v1");
        Ok(payload)
    });
    let orders_v2 = Repository::<OrderV2>::new(backend.clone())
        .with_topic(&topic)
        .with_schemas(schemas_v2.clone())
        .with_upcasters(upcasters);
    let executed = runtime.block_on(orders_v2.execute("o-1", &("pear".into(), 1))).expect("place v2");
    assert_eq!(
        executed.state.placed,
        [("apple".to_owned(), 3, Some("from v1".to_owned())), ("pear".to_owned(), 1, Some("new".to_owned()))]
    );
    assert_eq!(
        runtime.block_on(stored_versions(backend.as_ref(), &topic, "o-1")),
        [Some("1".to_owned()), Some("2".to_owned())]
    );
    let loaded = runtime.block_on(orders_v2.load("o-1")).expect("load");
    assert_eq!(loaded.state, executed.state);

    // Without the upcaster the version-1 event cannot be read as version 2, and the error says
    // which step is missing.
    let no_upcaster = Repository::<OrderV2>::new(backend.clone()).with_topic(&topic).with_schemas(schemas_v2);
    match runtime.block_on(no_upcaster.load("o-1")) {
        Err(Error::Decode(why)) => assert!(why.contains("no upcaster is registered from Placed v1 to v2"), "{why}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Code still on the first deployment cannot read the event written at version 2.
    let schemas_v1 = EventSchemas::from_versions(&topic, [("Placed".to_owned(), 1, 0), ("Shipped".to_owned(), 1, 0)]);
    let old_reader = Repository::<OrderV1>::new(backend.clone()).with_topic(&topic).with_schemas(schemas_v1);
    match runtime.block_on(old_reader.load("o-1")) {
        Err(Error::Decode(why)) => assert!(why.contains("newer than this code's"), "{why}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn an_unreachable_registry_fails_start_up_as_unavailable() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let client = RegistryClient::new(&format!("http://127.0.0.1:{port}")).expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    match runtime.block_on(EventSchemas::register::<v1::OrderEvent>(&client, "orders")) {
        Err(Error::Unavailable(why)) => assert!(why.contains("schema registry"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
