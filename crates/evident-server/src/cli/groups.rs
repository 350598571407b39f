//! `evident groups`: consumer groups over `/v1/groups`, with `reset-offsets` taking exactly the
//! flags of Kafka's `kafka-consumer-groups --reset-offsets` (a plan unless `--execute`).

use clap::{ArgGroup, Args, Subcommand};
use evident_api::groups::{
    CommitOffsets, DateTimeArg, GroupDescription, GroupList, GroupOffsets, GroupState, OffsetCommit, ResetOffsets,
    ResetPlan, TopicPartitions,
};
use serde_json::json;

use super::client::{self, Client};
use super::output;
use super::ClientOptions;

/// `evident groups`: the shared options and a group subcommand.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub(super) client: ClientOptions,
    #[command(subcommand)]
    command: GroupsCommand,
}

/// The group subcommands.
#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group: members, and per partition the committed offset, log end offset and lag.
    Describe(GroupName),
    /// Delete a group and its committed offsets (refused while it has active members).
    Delete(GroupName),
    /// Show a group's committed offsets.
    Offsets {
        #[command(flatten)]
        group: GroupName,
        /// Only this topic's offsets.
        #[arg(long, value_name = "TOPIC")]
        topic: Option<String>,
    },
    /// Commit one offset for a group: the position of the next record it will read.
    Commit {
        /// The consumer group.
        #[arg(long, short = 'g', value_name = "GROUP")]
        group: String,
        /// The topic.
        #[arg(long, value_name = "TOPIC")]
        topic: String,
        /// The partition.
        #[arg(long, short = 'p', value_name = "P")]
        partition: u32,
        /// The offset to commit.
        #[arg(long, value_name = "N")]
        offset: u64,
        /// Metadata stored with the offset.
        #[arg(long, value_name = "TEXT")]
        metadata: Option<String>,
    },
    /// Plan or execute an offset reset, with the flags of `kafka-consumer-groups --reset-offsets`.
    ResetOffsets(ResetOffsetsArgs),
}

/// A group name, given as `--group G` (as Kafka's tools take it) or as the first argument.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct GroupName {
    /// The consumer group.
    #[arg(value_name = "GROUP")]
    name: Option<String>,
    /// The consumer group (the same as the positional GROUP).
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
}

impl GroupName {
    /// The name, wherever it was given (clap requires exactly one).
    fn get(&self) -> &str {
        self.name.as_deref().or(self.group.as_deref()).unwrap_or_default()
    }
}

/// `evident groups reset-offsets`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("scope").args(["topics", "all_topics"]).required(true).multiple(false)),
    group(
        ArgGroup::new("strategy")
            .args(["to_earliest", "to_latest", "to_current", "to_offset", "shift_by", "to_datetime", "by_duration"])
            .required(true)
            .multiple(false)
    ),
    after_long_help = "Exactly one scope (--topic, repeatable, or --all-topics) and exactly one strategy.
Without --execute this only prints the plan: GROUP, TOPIC, PARTITION, CURRENT-OFFSET and the
NEW-OFFSET each partition would get (kept within the log's start and end), and changes nothing.
With --execute the new offsets are committed; the server refuses that (group_not_empty) while
the group has active members.

Examples:
  evident groups reset-offsets --group billing --all-topics --to-earliest
  evident groups reset-offsets --group billing --topic bank:0,1 --shift-by -5 --execute
  evident groups reset-offsets --group billing --topic bank --to-datetime 2026-11-22T10:00:00.000 --execute
  evident groups reset-offsets --group billing --topic bank --by-duration PT1H"
)]
struct ResetOffsetsArgs {
    /// The consumer group.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: String,

    /// Reset this topic, or only the listed partitions of it (`bank:0,1`). Repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:P,...]", value_parser = parse_topic_scope, help_heading = "Scope (one)")]
    topics: Vec<String>,
    /// Reset every topic the group has committed offsets for.
    #[arg(long, help_heading = "Scope (one)")]
    all_topics: bool,

    /// Reset to the earliest offset still in the log.
    #[arg(long, help_heading = "Strategy (one)")]
    to_earliest: bool,
    /// Reset to the end of the log (skip everything not yet read).
    #[arg(long, help_heading = "Strategy (one)")]
    to_latest: bool,
    /// Reset to the current committed offset (a no-op, useful to export a plan).
    #[arg(long, help_heading = "Strategy (one)")]
    to_current: bool,
    /// Reset to this offset.
    #[arg(long, value_name = "N", help_heading = "Strategy (one)")]
    to_offset: Option<u64>,
    /// Move the committed offset by N (negative: back, to re-read).
    #[arg(long, value_name = "N", allow_negative_numbers = true, help_heading = "Strategy (one)")]
    shift_by: Option<i64>,
    /// Reset to the first offset at or after this time: YYYY-MM-DDTHH:mm:SS[.sss] with an optional
    /// zone (none: UTC, where Kafka's tool assumes the local zone), or milliseconds since the epoch.
    #[arg(long, value_name = "DATETIME", help_heading = "Strategy (one)")]
    to_datetime: Option<String>,
    /// Reset to the first offset at or after now minus this ISO 8601 duration (`PT1H`, `P1DT2H`).
    #[arg(long, value_name = "DURATION", help_heading = "Strategy (one)")]
    by_duration: Option<String>,

    /// Commit the new offsets.
    #[arg(long, conflicts_with = "dry_run")]
    execute: bool,
    /// Only print the plan (the default).
    #[arg(long)]
    dry_run: bool,
}

/// Checks a `--topic` scope (`bank` or `bank:0,2`) early, so a typo is a usage error; it is sent as
/// typed, as Kafka's tool takes it.
fn parse_topic_scope(text: &str) -> Result<String, String> {
    let (topic, partitions) = match text.split_once(':') {
        Some((topic, partitions)) => (topic, Some(partitions)),
        None => (text, None),
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P,P,..., got {text:?}"));
    }
    if let Some(partitions) = partitions {
        for p in partitions.split(',') {
            p.trim().parse::<u32>().map_err(|_| format!("{p:?} in {text:?} is not a partition number"))?;
        }
    }
    Ok(text.to_owned())
}

impl ResetOffsetsArgs {
    /// The body of `POST /v1/groups/{group}/reset-offsets`: every field present, unset ones
    /// `false` or `null`, as docs/http-api.md shows it. An offset past `i64::MAX` (Kafka's
    /// largest) is sent as that: the server clamps it to the log's end anyway.
    fn body(&self) -> ResetOffsets {
        ResetOffsets {
            topics: self.topics.clone(),
            all_topics: self.all_topics,
            to_earliest: self.to_earliest,
            to_latest: self.to_latest,
            to_current: self.to_current,
            to_offset: self.to_offset.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            shift_by: self.shift_by,
            to_datetime: self.to_datetime.clone().map(DateTimeArg::Text),
            by_duration: self.by_duration.clone(),
            execute: self.execute,
        }
    }
}

/// Runs a group subcommand.
pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client.server)?;
    let json = args.client.json;
    let reply = match &args.command {
        GroupsCommand::List => client.get(client.url(&["v1", "groups"], &[])?)?,
        GroupsCommand::Describe(group) => client.get(client.url(&["v1", "groups", group.get()], &[])?)?,
        GroupsCommand::Delete(group) => {
            let reply = client.delete(client.url(&["v1", "groups", group.get()], &[])?)?;
            // The server answers 204 with no body; scripts still get one JSON document.
            reply.unwrap_or_else(|| json!({"group": group.get(), "deleted": true}))
        }
        GroupsCommand::Offsets { group, topic } => {
            client.get(client.url(&["v1", "groups", group.get(), "offsets"], &[("topic", topic.clone())])?)?
        }
        GroupsCommand::Commit { group, topic, partition, offset, metadata } => {
            let body = CommitOffsets {
                offsets: vec![OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    metadata: metadata.clone(),
                }],
            };
            client.post(client.url(&["v1", "groups", group, "offsets"], &[])?, &body)?
        }
        GroupsCommand::ResetOffsets(reset) => {
            client.post(client.url(&["v1", "groups", &reset.group, "reset-offsets"], &[])?, &reset.body())?
        }
    };
    if json {
        return Ok(output::print_json(&reply)?);
    }
    let text = match &args.command {
        GroupsCommand::List => list_text(&client::decode(&reply, "a group list")?),
        GroupsCommand::Describe(group) => describe_text(group.get(), &client::decode(&reply, "a group description")?),
        GroupsCommand::Delete(group) => format!("Deleted group {}.", group.get()),
        GroupsCommand::Offsets { group, .. } => offsets_text(group.get(), &client::decode(&reply, "group offsets")?),
        GroupsCommand::Commit { group, .. } => offsets_text(group, &client::decode(&reply, "group offsets")?),
        GroupsCommand::ResetOffsets(reset) => reset_text(&reset.group, &client::decode(&reply, "a reset plan")?),
    };
    Ok(output::print_text(&text)?)
}

/// A group's state as the server names it.
fn state_text(state: GroupState) -> &'static str {
    match state {
        GroupState::Stable => "Stable",
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
    }
}

/// An optional number for a table cell, `-` when absent.
fn number(n: Option<impl ToString>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// `groups list` for people.
fn list_text(reply: &GroupList) -> String {
    if reply.groups.is_empty() {
        return "No consumer groups.".to_owned();
    }
    let mut table = output::table(&["GROUP", "STATE", "MEMBERS"]);
    for group in &reply.groups {
        table.add_row(vec![group.group.clone(), state_text(group.state).to_owned(), group.members.to_string()]);
    }
    output::render_table(&table)
}

/// `groups describe` for people: a headline, the offsets as `kafka-consumer-groups --describe`
/// shows them, and the members.
fn describe_text(group: &str, reply: &GroupDescription) -> String {
    let members = reply.members.len();
    let noun = if members == 1 { "member" } else { "members" };
    let mut text =
        format!("Group {group}: {}, {members} {noun}, total lag {}.", state_text(reply.state), reply.total_lag);
    if reply.offsets.is_empty() {
        text.push_str("\nNo committed offsets.");
    } else {
        let mut table = output::table(&[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "METADATA",
        ]);
        for offset in &reply.offsets {
            table.add_row(vec![
                group.to_owned(),
                offset.topic.clone(),
                offset.partition.to_string(),
                number(offset.committed_offset),
                number(offset.log_end_offset),
                number(offset.lag),
                output::or_dash(offset.member_id.as_deref()),
                output::or_dash(offset.metadata.as_deref()),
            ]);
        }
        text.push_str("\n\n");
        text.push_str(&output::render_table(&table));
    }
    if !reply.members.is_empty() {
        let mut table = output::table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for member in &reply.members {
            table.add_row(vec![
                member.member_id.clone(),
                member.client_id.clone(),
                member.client_host.clone(),
                assignment_text(&member.assignment),
            ]);
        }
        text.push_str("\n\n");
        text.push_str(&output::render_table(&table));
    }
    text
}

/// A member's assignment as Kafka's `--topic` syntax: `bank:0,1 orders:2`.
fn assignment_text(assignment: &[TopicPartitions]) -> String {
    if assignment.is_empty() {
        return "-".to_owned();
    }
    let parts: Vec<String> = assignment
        .iter()
        .map(|t| {
            let partitions: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
            format!("{}:{}", t.topic, partitions.join(","))
        })
        .collect();
    parts.join(" ")
}

/// Committed offsets (from `groups offsets` or `groups commit`) for people.
fn offsets_text(group: &str, reply: &GroupOffsets) -> String {
    if reply.offsets.is_empty() {
        return format!("Group {group} has no committed offsets.");
    }
    let mut table = output::table(&["GROUP", "TOPIC", "PARTITION", "OFFSET", "METADATA"]);
    for offset in &reply.offsets {
        table.add_row(vec![
            group.to_owned(),
            offset.topic.clone(),
            offset.partition.to_string(),
            offset.offset.to_string(),
            output::or_dash(offset.metadata.as_deref()),
        ]);
    }
    output::render_table(&table)
}

/// A reset plan or result for people, as Kafka's tool prints it, and whether anything changed.
fn reset_text(group: &str, reply: &ResetPlan) -> String {
    let mut table = output::table(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    for offset in &reply.offsets {
        table.add_row(vec![
            group.to_owned(),
            offset.topic.clone(),
            offset.partition.to_string(),
            number(offset.current_offset),
            offset.new_offset.to_string(),
        ]);
    }
    let mut text = if reply.offsets.is_empty() {
        "No partitions matched the scope.".to_owned()
    } else {
        output::render_table(&table)
    };
    if reply.executed {
        text.push_str(&format!(
            "\n\nCommitted the new offsets of {} partitions for group {group}.",
            reply.offsets.len()
        ));
    } else {
        text.push_str("\n\nDry run: nothing was changed. Run again with --execute to commit these offsets.");
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::*;

    fn typed<T: DeserializeOwned>(reply: Value) -> T {
        client::decode(&reply, "the reply").expect("decodes")
    }

    fn body(reset: &ResetOffsetsArgs) -> Value {
        serde_json::to_value(reset.body()).expect("json")
    }

    /// A stand-in top-level command, to parse `groups` arguments as the binary does.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        groups: GroupsArgs,
    }

    fn reset(args: &[&str]) -> Result<ResetOffsetsArgs, clap::Error> {
        let argv = ["groups", "reset-offsets"].iter().chain(args);
        let cli = Cli::try_parse_from(argv)?;
        match cli.groups.command {
            GroupsCommand::ResetOffsets(reset) => Ok(reset),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn reset_flags_to_body() {
        let plan =
            reset(&["--group", "billing", "--topic", "bank:0,1", "--topic", "orders", "--shift-by", "-5"]).unwrap();
        assert_eq!(
            body(&plan),
            json!({"topics": ["bank:0,1", "orders"], "all_topics": false, "to_earliest": false, "to_latest": false,
                "to_current": false, "to_offset": null, "shift_by": -5, "to_datetime": null, "by_duration": null,
                "execute": false})
        );
        let execute =
            reset(&["-g", "billing", "--all-topics", "--to-datetime", "2026-11-22T10:00:00", "--execute"]).unwrap();
        let execute = body(&execute);
        assert_eq!((execute["all_topics"].clone(), execute["topics"].clone()), (json!(true), json!([])));
        assert_eq!(
            (execute["to_datetime"].clone(), execute["execute"].clone()),
            (json!("2026-11-22T10:00:00"), json!(true))
        );
        let duration = reset(&["--group", "g", "--topic", "t", "--by-duration", "PT1H", "--dry-run"]).unwrap();
        assert_eq!(
            (body(&duration)["by_duration"].clone(), body(&duration)["execute"].clone()),
            (json!("PT1H"), json!(false))
        );
        assert_eq!(body(&reset(&["--group", "g", "--topic", "t", "--to-offset", "42"]).unwrap())["to_offset"], 42);
    }

    #[test]
    fn reset_flags_are_checked() {
        // No strategy, two strategies, no scope, two scopes, a bad partition list, both modes.
        assert!(reset(&["--group", "g", "--topic", "t"]).is_err());
        assert!(reset(&["--group", "g", "--topic", "t", "--to-earliest", "--to-latest"]).is_err());
        assert!(reset(&["--group", "g", "--to-earliest"]).is_err());
        assert!(reset(&["--group", "g", "--topic", "t", "--all-topics", "--to-earliest"]).is_err());
        assert!(reset(&["--group", "g", "--topic", "t:x", "--to-earliest"]).is_err());
        assert!(reset(&["--group", "g", "--topic", "t", "--to-earliest", "--execute", "--dry-run"]).is_err());
        assert!(reset(&["--topic", "t", "--to-earliest"]).is_err());
    }

    #[test]
    fn group_names() {
        for argv in [["groups", "describe", "billing"], ["groups", "describe", "--group=billing"]] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let GroupsCommand::Describe(group) = cli.groups.command else { panic!("not describe") };
            assert_eq!(group.get(), "billing");
        }
        assert!(Cli::try_parse_from(["groups", "describe"]).is_err());
        assert!(Cli::try_parse_from(["groups", "describe", "a", "--group", "b"]).is_err());
    }

    #[test]
    fn describe_for_people() {
        let reply = typed(json!({"group": "billing", "state": "Stable", "total_lag": 3,
            "members": [{"member_id": "m-1", "client_id": "c", "client_host": "/127.0.0.1",
                "session_timeout_ms": 45000, "last_heartbeat_ms": 1,
                "assignment": [{"topic": "bank", "partitions": [0, 1]}]}],
            "offsets": [{"topic": "bank", "partition": 0, "committed_offset": 9, "log_end_offset": 12, "lag": 3,
                "metadata": null, "member_id": "m-1", "commit_time_ms": 1, "log_start_offset": 0}]}));
        assert_eq!(
            describe_text("billing", &reply),
            "Group billing: Stable, 1 member, total lag 3.\n\n\
             GROUP    TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  METADATA\n\
             billing  bank   0          9               12              3    m-1          -\n\n\
             MEMBER-ID  CLIENT-ID  HOST        ASSIGNMENT\n\
             m-1        c          /127.0.0.1  bank:0,1"
        );
    }

    #[test]
    fn reset_plan_for_people() {
        let row = json!({"topic": "bank", "partition": 0, "current_offset": 10, "new_offset": 5,
            "log_start_offset": 0, "log_end_offset": 12});
        let reply = typed(json!({"group": "billing", "executed": false, "offsets": [row]}));
        assert_eq!(
            reset_text("billing", &reply),
            "GROUP    TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET\nbilling  bank   0          10              5\n\n\
             Dry run: nothing was changed. Run again with --execute to commit these offsets."
        );
    }
}
