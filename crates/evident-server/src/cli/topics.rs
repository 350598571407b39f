//! `evident topics list|create|describe|delete`: topic administration over `/v1/topics`.

use clap::{Args, Subcommand};
use evident_api::topics::{CleanupPolicy, CreatedTopic, KeyPartitioner, TopicConfig, TopicDescription, TopicList};
use serde_json::{json, Map, Value};

use super::client::{self, Client};
use super::output;
use super::ClientOptions;

/// `evident topics`: the shared options and a topic subcommand.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    #[command(subcommand)]
    command: TopicsCommand,
}

/// The topic subcommands.
#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// List topics, sorted by name.
    List {
        /// Include internal topics (`__consumer_offsets`).
        #[arg(long)]
        internal: bool,
    },
    /// Create a topic.
    #[command(after_help = "Configuration keys (--config KEY=VALUE, repeatable):
  retention_ms=N|null             delete records older than N ms (null: keep them forever)
  retention_bytes=N|null          keep at most N bytes per partition (null: no limit)
  cleanup_policy=delete|compact   delete old segments, or keep the last record of each key
  key_partition_guard=true|false  refuse a record whose key lives in another partition
  key_partitioner=murmur2|crc32|fnv1a
                                  the hash new keys are placed with when an append names no partition:
                                  murmur2 (Java client), crc32 (librdkafka's default), fnv1a (Sarama)
  value_schema_validation=true|false
                                  check each event's data against the schema registry (HTTP appends:
                                  the latest schema of its subject; Kafka produce: the id it names);
                                  a failing append is refused with 422 and nothing is stored
  key_schema_validation=true|false
                                  check each Kafka record's key the same way (HTTP keys are not checked)
  value_subject_name_strategy=TopicNameStrategy|RecordNameStrategy|TopicRecordNameStrategy|EventTypeNameStrategy
                                  the subject a value is checked against; unset: <topic>-<event type>
                                  for HTTP appends, <topic>-value for Kafka produce
  key_subject_name_strategy=TopicNameStrategy|RecordNameStrategy|TopicRecordNameStrategy
                                  the subject a key is checked against; unset: <topic>-key
Kafka's spellings (retention.ms, cleanup.policy, evident.key.partitioner,
confluent.value.schema.validation, full strategy class names) are accepted too.

Not enforced yet: retention (retention_ms, retention_bytes) and compaction (cleanup_policy=compact)
are stored with the topic but evident does not delete or compact records yet: every record is
kept. The server's reply warns about each such setting given (`warnings`).

Examples: evident topics create bank --partitions 3 --config retention_ms=604800000
          evident topics create bank --config value_schema_validation=true")]
    Create {
        /// The topic's name: 1 to 249 of [a-zA-Z0-9._-]; names starting with `__` are reserved.
        name: String,
        /// How many partitions (1 to 10000); the server's default is 1.
        #[arg(long, short = 'p', value_name = "N")]
        partitions: Option<u32>,
        /// A topic configuration entry, KEY=VALUE (repeatable; keys below).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_config_entry)]
        config: Vec<(String, Value)>,
    },
    /// Show a topic: its configuration, stream and record counts, and each partition's offsets.
    Describe {
        /// The topic's name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic's name.
        name: String,
    },
}

/// Runs a topic subcommand.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client.server)?;
    let json = args.client.json;
    match args.command {
        TopicsCommand::List { internal } => {
            let internal_param = internal.then(|| "true".to_owned());
            let reply = client.get(client.url(&["v1", "topics"], &[("internal", internal_param)])?)?;
            if json {
                return Ok(output::print_json(&reply)?);
            }
            let TopicList { topics } = client::decode(&reply, "a topic list")?;
            if topics.is_empty() {
                return Ok(output::print_text("No topics.")?);
            }
            let mut headers = vec!["NAME", "PARTITIONS", "CREATED", "CONFIG"];
            if internal {
                headers.insert(2, "INTERNAL");
            }
            let mut table = output::table(&headers);
            for topic in &topics {
                let mut row = vec![
                    topic.name.clone(),
                    topic.partitions.to_string(),
                    topic.created.clone(),
                    config_summary(&topic.config),
                ];
                if internal {
                    row.insert(2, topic.internal.to_string());
                }
                table.add_row(row);
            }
            Ok(output::print_table(&table)?)
        }
        TopicsCommand::Create { name, partitions, config } => {
            let body = create_body(&name, partitions, config)?;
            let reply = client.post(client.url(&["v1", "topics"], &[])?, &body)?;
            if json {
                return Ok(output::print_json(&reply)?);
            }
            let created: CreatedTopic = client::decode(&reply, "a created topic")?;
            for warning in &created.warnings {
                eprintln!("evident: warning: {warning}");
            }
            let partitions = created.topic.partitions;
            let plural = if partitions == 1 { "" } else { "s" };
            Ok(output::print_text(&format!(
                "Created topic {} ({partitions} partition{plural}, {}).",
                created.topic.name,
                config_summary(&created.topic.config)
            ))?)
        }
        TopicsCommand::Describe { name } => {
            let reply = client.get(client.url(&["v1", "topics", &name], &[])?)?;
            if json {
                return Ok(output::print_json(&reply)?);
            }
            Ok(output::print_text(&describe_text(&client::decode(&reply, "a topic description")?))?)
        }
        TopicsCommand::Delete { name } => {
            let reply = client.delete(client.url(&["v1", "topics", &name], &[])?)?;
            if json {
                // The server answers 204 with no body; scripts still get one JSON document.
                return Ok(output::print_json(&reply.unwrap_or_else(|| json!({"topic": name, "deleted": true})))?);
            }
            Ok(output::print_text(&format!("Deleted topic {name}."))?)
        }
    }
}

/// The body of `POST /v1/topics`; `partitions` and `config` are left out when not given, so the
/// server's defaults apply. Built as JSON rather than as `evident_api::topics::CreateTopic`
/// because `config` holds only the keys given (a `TopicConfig` would send every key, defaults
/// included) and passes on keys this build does not know, for a newer server to take.
fn create_body(name: &str, partitions: Option<u32>, config: Vec<(String, Value)>) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    if let Some(partitions) = partitions {
        body.insert("partitions".into(), json!(partitions));
    }
    if !config.is_empty() {
        let mut entries = Map::new();
        for (key, value) in config {
            if entries.insert(key.clone(), value).is_some() {
                anyhow::bail!("--config {key} is given more than once");
            }
        }
        body.insert("config".into(), Value::Object(entries));
    }
    Ok(Value::Object(body))
}

/// Parses one `--config KEY=VALUE`. Kafka's dotted names are accepted (`retention.ms`) since that
/// is what Kafka users type. Known keys are typed here so a mistake is a usage error before any
/// request; an unknown key is passed on (a JSON value, else a string) for the server to accept or
/// refuse, so newer servers' keys work from an older CLI.
fn parse_config_entry(entry: &str) -> Result<(String, Value), String> {
    let (key, value) = entry
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE (e.g. retention_ms=86400000), got {entry:?}"))?;
    let mut key = key.trim().replace(['.', '-'], "_");
    // Kafka's names of evident's and Confluent's settings carry a prefix the JSON keys do not.
    for (prefix, keys) in [("evident_", &EVIDENT_KEYS[..]), ("confluent_", &CONFLUENT_KEYS[..])] {
        if let Some(rest) = key.strip_prefix(prefix).filter(|rest| keys.contains(rest)) {
            key = rest.to_owned();
        }
    }
    let value = value.trim();
    let boolean = |key: &str| match value {
        "true" => Ok(json!(true)),
        "false" => Ok(json!(false)),
        _ => Err(format!("{key} takes true or false, got {value:?}")),
    };
    let parsed = match key.as_str() {
        "retention_ms" | "retention_bytes" => {
            if value.eq_ignore_ascii_case("null") || value.eq_ignore_ascii_case("none") {
                Value::Null
            } else {
                let n: u64 = value.parse().map_err(|_| format!("{key} takes a number or null, got {value:?}"))?;
                json!(n)
            }
        }
        "cleanup_policy" => match value {
            "delete" | "compact" => json!(value),
            _ => return Err(format!("cleanup_policy takes delete or compact, got {value:?}")),
        },
        "key_partition_guard" | "value_schema_validation" | "key_schema_validation" => boolean(&key)?,
        "key_partitioner" => match value {
            "murmur2" | "crc32" | "fnv1a" => json!(value),
            _ => return Err(format!("key_partitioner takes murmur2, crc32 or fnv1a, got {value:?}")),
        },
        "value_subject_name_strategy" | "key_subject_name_strategy" => {
            let choices = if key == "value_subject_name_strategy" { &STRATEGIES[..] } else { &STRATEGIES[..3] };
            // The full class name or its last part, as Kafka's config takes; sent as the last part.
            match choices.iter().find(|(name, class)| *name == value || *class == value) {
                Some((name, _)) => json!(name),
                None if STRATEGIES[3].0 == value || STRATEGIES[3].1 == value => {
                    return Err(format!("{key}: {value} names value subjects only, not keys"));
                }
                None => {
                    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                    return Err(format!("{key} takes {}, got {value:?}", names.join(", ")));
                }
            }
        }
        "" => return Err(format!("expected KEY=VALUE, got {entry:?}")),
        _ => serde_json::from_str(value).unwrap_or_else(|_| json!(value)),
    };
    Ok((key, parsed))
}

/// The settings whose Kafka names are `evident.` and these.
const EVIDENT_KEYS: [&str; 2] = ["key_partition_guard", "key_partitioner"];

/// The settings whose Kafka names are `confluent.` and these.
const CONFLUENT_KEYS: [&str; 4] =
    ["value_schema_validation", "key_schema_validation", "value_subject_name_strategy", "key_subject_name_strategy"];

/// The subject name strategies: the API's name and Kafka's full class name. Keys take the first
/// three (the event type names what a value is; a key has none of its own).
const STRATEGIES: [(&str, &str); 4] = [
    ("TopicNameStrategy", "io.confluent.kafka.serializers.subject.TopicNameStrategy"),
    ("RecordNameStrategy", "io.confluent.kafka.serializers.subject.RecordNameStrategy"),
    ("TopicRecordNameStrategy", "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"),
    ("EventTypeNameStrategy", "evident.subject.EventTypeNameStrategy"),
];

/// The JSON name of a subject name strategy, as the server writes it.
fn strategy_name<T: serde::Serialize>(strategy: &T) -> String {
    match serde_json::to_value(strategy) {
        Ok(Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// The configuration entries of a reply, in the server's order, each `Some(value)` or `None`
/// when unset (`null`).
fn config_entries(config: &TopicConfig) -> [(&'static str, Option<String>); 10] {
    let cleanup_policy = match config.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
    };
    let key_partitioner = match config.key_partitioner {
        KeyPartitioner::Murmur2 => "murmur2",
        KeyPartitioner::Crc32 => "crc32",
        KeyPartitioner::Fnv1a => "fnv1a",
    };
    [
        ("partitions", Some(config.partitions.to_string())),
        ("retention_ms", config.retention_ms.map(|n| n.to_string())),
        ("retention_bytes", config.retention_bytes.map(|n| n.to_string())),
        ("cleanup_policy", Some(cleanup_policy.to_owned())),
        ("key_partition_guard", Some(config.key_partition_guard.to_string())),
        ("key_partitioner", Some(key_partitioner.to_owned())),
        ("value_schema_validation", Some(config.value_schema_validation.to_string())),
        ("key_schema_validation", Some(config.key_schema_validation.to_string())),
        ("value_subject_name_strategy", config.value_subject_name_strategy.as_ref().map(strategy_name)),
        ("key_subject_name_strategy", config.key_subject_name_strategy.as_ref().map(strategy_name)),
    ]
}

/// Whether an entry is a schema validation setting left at its default (off, or not set).
fn validation_default(key: &str, value: Option<&str>) -> bool {
    CONFLUENT_KEYS.contains(&key) && matches!(value, None | Some("false"))
}

/// A topic's configuration as `key=value` pairs, leaving out the unset ones and the partition
/// count (which has its own column). Schema validation shows only when on, so the list of
/// topics that do not use it (most) stays one screen wide; `describe` shows every setting.
fn config_summary(config: &TopicConfig) -> String {
    let set: Vec<String> = config_entries(config)
        .into_iter()
        .filter(|(k, v)| *k != "partitions" && !validation_default(k, v.as_deref()))
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        "defaults".to_owned()
    } else {
        set.join(",")
    }
}

/// `topics describe` for people: the topic's fields, then a table of its partitions.
fn describe_text(description: &TopicDescription) -> String {
    let topic = &description.topic;
    let mut fields = output::table(&["FIELD", "VALUE"]);
    for (name, value) in [
        ("name", topic.name.clone()),
        ("id", topic.id.to_string()),
        ("partitions", topic.partitions.to_string()),
        ("internal", topic.internal.to_string()),
        ("created", topic.created.clone()),
        ("streams", description.streams.to_string()),
        ("records", description.records.to_string()),
    ] {
        fields.add_row(vec![name.to_owned(), value]);
    }
    for (key, value) in config_entries(&topic.config) {
        fields.add_row(vec![format!("config.{key}"), value.unwrap_or_else(|| "-".to_owned())]);
    }
    let mut text = output::render_table(&fields);
    if !description.partition_offsets.is_empty() {
        let mut table = output::table(&["PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK", "SIZE-BYTES"]);
        for p in &description.partition_offsets {
            table.add_row(vec![
                p.partition.to_string(),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.size_bytes.to_string(),
            ]);
        }
        text.push_str("\n\n");
        text.push_str(&output::render_table(&table));
    }
    text
}

#[cfg(test)]
mod tests {
    use evident_api::topics::SubjectNameStrategy;

    use super::*;

    #[test]
    fn config_entries() {
        assert_eq!(parse_config_entry("retention_ms=86400000").unwrap(), ("retention_ms".into(), json!(86400000)));
        assert_eq!(parse_config_entry("retention.bytes=null").unwrap(), ("retention_bytes".into(), Value::Null));
        assert_eq!(parse_config_entry("cleanup.policy=compact").unwrap(), ("cleanup_policy".into(), json!("compact")));
        assert_eq!(
            parse_config_entry("key_partition_guard=false").unwrap(),
            ("key_partition_guard".into(), json!(false))
        );
        assert_eq!(parse_config_entry("future_key=3").unwrap(), ("future_key".into(), json!(3)));
        assert_eq!(parse_config_entry("future_key=abc").unwrap(), ("future_key".into(), json!("abc")));
        assert!(parse_config_entry("retention_ms=-1").is_err());
        assert!(parse_config_entry("retention_ms").is_err());
        assert!(parse_config_entry("cleanup_policy=shred").is_err());
        assert!(parse_config_entry("key_partition_guard=yes").is_err());
        assert!(parse_config_entry("=5").is_err());
    }

    #[test]
    fn schema_validation_entries() {
        for entry in ["value_schema_validation=true", "confluent.value.schema.validation=true"] {
            assert_eq!(parse_config_entry(entry).unwrap(), ("value_schema_validation".into(), json!(true)), "{entry}");
        }
        assert_eq!(
            parse_config_entry("confluent.key.schema.validation=false").unwrap(),
            ("key_schema_validation".into(), json!(false))
        );
        assert_eq!(
            parse_config_entry("evident.key.partitioner=crc32").unwrap(),
            ("key_partitioner".into(), json!("crc32"))
        );
        for value in ["EventTypeNameStrategy", "evident.subject.EventTypeNameStrategy"] {
            assert_eq!(
                parse_config_entry(&format!("confluent.value.subject.name.strategy={value}")).unwrap(),
                ("value_subject_name_strategy".into(), json!("EventTypeNameStrategy"))
            );
        }
        assert_eq!(
            parse_config_entry("key_subject_name_strategy=io.confluent.kafka.serializers.subject.RecordNameStrategy")
                .unwrap(),
            ("key_subject_name_strategy".into(), json!("RecordNameStrategy"))
        );
        let e = parse_config_entry("key_subject_name_strategy=EventTypeNameStrategy").unwrap_err();
        assert!(e.contains("value subjects only"), "{e}");
        let e = parse_config_entry("value_subject_name_strategy=TopicName").unwrap_err();
        assert!(
            e.contains("TopicNameStrategy, RecordNameStrategy, TopicRecordNameStrategy, EventTypeNameStrategy"),
            "{e}"
        );
        assert!(parse_config_entry("value_subject_name_strategy=my.TopicNameStrategy").is_err());
        assert!(parse_config_entry("value_schema_validation=yes").is_err());
        // A prefix on a name that is not one of its settings stays, for the server to judge.
        assert_eq!(parse_config_entry("confluent.placement=3").unwrap(), ("confluent_placement".into(), json!(3)));
    }

    #[test]
    fn create_bodies() {
        assert_eq!(create_body("bank", None, vec![]).unwrap(), json!({"name": "bank"}));
        let config = vec![("retention_ms".into(), json!(5)), ("cleanup_policy".into(), json!("delete"))];
        assert_eq!(
            create_body("bank", Some(3), config).unwrap(),
            json!({"name": "bank", "partitions": 3, "config": {"retention_ms": 5, "cleanup_policy": "delete"}})
        );
        let twice = vec![("retention_ms".into(), json!(5)), ("retention_ms".into(), json!(6))];
        assert!(create_body("bank", None, twice).is_err());
    }

    #[test]
    fn config_summaries() {
        assert_eq!(
            config_summary(&TopicConfig::default()),
            "cleanup_policy=delete,key_partition_guard=true,key_partitioner=murmur2"
        );
        let config =
            TopicConfig { retention_ms: Some(5), cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() };
        assert_eq!(
            config_summary(&config),
            "retention_ms=5,cleanup_policy=compact,key_partition_guard=true,key_partitioner=murmur2"
        );
        let config = TopicConfig {
            value_schema_validation: true,
            value_subject_name_strategy: Some(SubjectNameStrategy::EventType),
            ..TopicConfig::default()
        };
        assert_eq!(
            config_summary(&config),
            "cleanup_policy=delete,key_partition_guard=true,key_partitioner=murmur2,value_schema_validation=true,\
             value_subject_name_strategy=EventTypeNameStrategy"
        );
        let description: TopicDescription = client::decode(
            &json!({"name": "bank", "id": 3, "partitions": 1, "internal": false, "created": "2026-12-03T10:00:00.000Z",
                "config": {"partitions": 1, "retention_ms": null, "retention_bytes": null, "cleanup_policy": "delete",
                    "key_partition_guard": true},
                "streams": 2, "records": 5, "size_bytes": 300,
                "partition_offsets": [{"partition": 0, "log_start_offset": 0, "high_watermark": 5, "size_bytes": 300}]}),
            "a topic description",
        )
        .expect("decodes");
        let text = describe_text(&description);
        assert!(text.contains("\nconfig.retention_ms                 -\n"), "{text}");
        assert!(text.contains("\nconfig.value_schema_validation      false\n"), "{text}");
        assert!(text.contains("\nconfig.value_subject_name_strategy  -\n"), "{text}");
        assert!(text.ends_with("0          0                 5               300"), "{text}");
    }
}
