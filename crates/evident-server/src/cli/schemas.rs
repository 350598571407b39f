//! `evident schemas list|get|register|check|delete|config`: a client of a schema registry that
//! speaks Confluent's REST API (the one `evident serve` runs on `--registry-addr`, or any other:
//! Confluent's, Karapace, Apicurio's `/apis/ccompat/v7`, Redpanda's).
//!
//! It talks to the registry directly, not through evident's HTTP API, because the registry's
//! own API is the contract Confluent's serializers use: what the CLI shows is what they see.
//! The registry is `--registry URL` (`EVIDENT_REGISTRY_URL`, default `http://127.0.0.1:8081`);
//! a path prefix is kept (`http://host:8080/apis/ccompat/v7`).
//!
//! Output and exit codes follow the other client commands (`cli.rs`): a table or a line for
//! people, `--json` for scripts (the registry's reply; `list`, `register` and `get --id` print
//! a document gathered from several replies, described in docs/registry-cli.md). A refusal of
//! the registry is printed with Confluent's `error_code` and message and exits 1, as does
//! `check` finding the schema incompatible; bad usage exits 2, an unreachable registry 3.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};

use super::client::{Unreachable, Usage};
use super::output;

/// Where the schema commands look for a registry when neither `--registry` nor
/// `EVIDENT_REGISTRY_URL` says (the port `evident serve --registry-addr` defaults to, and
/// Confluent's).
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:8081";

/// Confluent's media type: what its clients send and accept (plain JSON is accepted too).
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How long a connection attempt may take before the registry is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest reply read from a registry; a larger one is refused rather than buffered, so a
/// broken or hostile peer cannot make the CLI allocate without bound.
const REPLY_MAX_BYTES: u64 = 64 << 20;

/// The largest schema file read: Confluent's own request limit is far below it.
const SCHEMA_FILE_MAX_BYTES: u64 = 16 << 20;

/// The help text about the options, output and exit codes of the schema commands.
pub const OPTIONS_NOTE: &str = r#"--registry and --json may come anywhere after `schemas`.
With --json, stdout holds only JSON (one document).
Exit codes: 0 success (and `check`: compatible); 1 the registry refused the request, or `check`
found the schema incompatible; 2 bad usage; 3 the registry could not be reached or did not
answer. Registry refusals are printed with Confluent's error_code; with --json as
{"error": {"code": "registry", "error_code", "message", "status"}} on stderr."#;

/// `evident schemas`: the registry options and a schema subcommand.
#[derive(Debug, Args)]
pub struct SchemasArgs {
    #[command(flatten)]
    pub(super) registry: RegistryOptions,
    #[command(subcommand)]
    command: SchemasCommand,
}

/// The options every schema subcommand takes (`global`, so accepted after the subcommand too).
#[derive(Debug, Clone, Args)]
pub struct RegistryOptions {
    /// The schema registry's URL (Confluent's REST API; `http://` is assumed when no scheme is
    /// given; a path prefix such as Apicurio's /apis/ccompat/v7 is kept).
    #[arg(
        long,
        global = true,
        env = "EVIDENT_REGISTRY_URL",
        default_value = DEFAULT_REGISTRY,
        value_name = "URL",
        help_heading = "Registry options"
    )]
    pub registry: String,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true, help_heading = "Registry options")]
    pub json: bool,
}

/// A schema format, as Confluent names it in `schemaType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SchemaFormat {
    /// Apache Avro (`.avsc`); Confluent's default.
    Avro,
    /// JSON Schema (`.json`).
    Json,
    /// Protocol Buffers (`.proto`).
    Protobuf,
}

impl SchemaFormat {
    /// Confluent's `schemaType` value.
    fn as_confluent(self) -> &'static str {
        match self {
            SchemaFormat::Avro => "AVRO",
            SchemaFormat::Json => "JSON",
            SchemaFormat::Protobuf => "PROTOBUF",
        }
    }

    /// The format a file's extension names, when it names one: `.avsc` Avro, `.json` JSON
    /// Schema, `.proto` Protobuf. Anything else (stdin included) is Avro, Confluent's default.
    fn from_path(path: &Path) -> SchemaFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => SchemaFormat::Json,
            Some("proto") => SchemaFormat::Protobuf,
            _ => SchemaFormat::Avro,
        }
    }
}

/// A schema to send: a file, its format and its references.
#[derive(Debug, Args)]
struct SchemaInput {
    /// The schema file (`-` reads stdin).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The schema's format; by default from the file's extension (.avsc Avro, .json JSON Schema,
    /// .proto Protobuf), else Avro as in Confluent's API.
    #[arg(long = "type", short = 't', value_enum, value_name = "FORMAT")]
    format: Option<SchemaFormat>,
    /// A schema reference, NAME=SUBJECT:VERSION (repeatable): the name the schema imports
    /// (an Avro full name, a JSON `$ref` URL, a .proto import path) and the registered schema
    /// it stands for.
    #[arg(long = "reference", short = 'r', value_name = "NAME=SUBJECT:VERSION", value_parser = parse_reference)]
    references: Vec<Reference>,
    /// Ask the registry to normalize the schema first (the same schema written another way is
    /// then the same version).
    #[arg(long)]
    normalize: bool,
}

/// A schema reference given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

/// The schema subcommands.
#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// List subjects with their latest version, schema id and format.
    List {
        /// Include soft-deleted subjects (marked in the DELETED column).
        #[arg(long)]
        deleted: bool,
    },
    /// Show a subject's schema at a version (default latest), or a schema by its global id.
    Get {
        /// The subject (not with --id).
        #[arg(value_name = "SUBJECT", required_unless_present = "id", conflicts_with = "id")]
        subject: Option<String>,
        /// The version: a number, or `latest` (the default).
        #[arg(value_name = "VERSION", value_parser = parse_version)]
        at: Option<String>,
        /// A schema's global id instead of a subject and version.
        #[arg(long, value_name = "N")]
        id: Option<u32>,
        /// Show a soft-deleted version too.
        #[arg(long)]
        deleted: bool,
    },
    /// Register a schema under a subject (a new version, or the existing one if the same schema
    /// is already there); refused if it is invalid or incompatible with the subject's level.
    Register {
        /// The subject (with the default strategy `<topic>-value`; evident's event-type strategy
        /// `<topic>-<EventType>`).
        subject: String,
        #[command(flatten)]
        input: SchemaInput,
    },
    /// Check whether a schema is compatible with a subject's version (default latest) under the
    /// subject's compatibility level, without registering it. Exit 1 when it is not.
    // `--version` is the version to check against here (as in Confluent's API), not the
    // program's version.
    #[command(disable_version_flag = true)]
    Check {
        /// The subject.
        subject: String,
        #[command(flatten)]
        input: SchemaInput,
        /// The version to check against: a number, or `latest` (the default).
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        version: Option<String>,
        /// Ask the registry for the reasons of an incompatibility, and print them.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Delete a subject (every version) or one version: a soft delete unless --permanent.
    Delete {
        /// The subject.
        subject: String,
        /// One version (a number or `latest`); the whole subject when absent.
        #[arg(value_name = "VERSION", value_parser = parse_version)]
        at: Option<String>,
        /// Remove for good (Confluent requires a soft delete first).
        #[arg(long)]
        permanent: bool,
    },
    /// Show or set the compatibility level, globally or for one subject.
    #[command(after_help = "Levels: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, \
                            FULL_TRANSITIVE (case-insensitive; the registry checks them).")]
    Config {
        /// The subject; the global level when absent.
        subject: Option<String>,
        /// Set the level.
        #[arg(long, value_name = "LEVEL", conflicts_with = "delete")]
        set: Option<String>,
        /// Remove the subject's own level, so the global one applies again.
        #[arg(long, requires = "subject")]
        delete: bool,
    },
}

/// A refusal of the registry: its HTTP status and, when the body had Confluent's shape
/// (`{"error_code", "message"}`), its error code and message.
#[derive(Debug, Clone)]
pub struct RegistryError {
    /// The HTTP status of the reply.
    pub status: StatusCode,
    /// Confluent's `error_code` (40401 subject not found, 409 incompatible, 42201 invalid schema...).
    pub error_code: Option<i64>,
    /// The registry's message (or the raw body when it was not Confluent's JSON).
    pub message: String,
}

impl RegistryError {
    /// Decodes an error reply's body; anything else than Confluent's JSON keeps the raw text.
    fn from_body(status: StatusCode, body: &str) -> Self {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error_code = parsed.as_ref().and_then(|v| v.get("error_code")).and_then(Value::as_i64);
        let message = parsed.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str).map(str::to_owned);
        match message {
            Some(message) => RegistryError { status, error_code, message },
            None => {
                let text = body.trim();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    output::truncate(text, 300)
                };
                RegistryError { status, error_code, message }
            }
        }
    }

    /// The `--json` error document.
    pub fn document(&self) -> Value {
        json!({"error": {
            "code": "registry",
            "error_code": self.error_code,
            "message": self.message,
            "status": self.status.as_u16(),
        }})
    }

    /// Whether this is Confluent's "not found" for `code` (40401 subject, 40402 version, ...).
    fn is(&self, code: i64) -> bool {
        self.error_code == Some(code)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error_code {
            Some(code) => write!(f, "{} (error_code {code}, HTTP {})", self.message, self.status.as_u16()),
            None => write!(f, "{} (HTTP {})", self.message, self.status.as_u16()),
        }
    }
}

impl std::error::Error for RegistryError {}

/// `check` found the schema incompatible: not a failure of the request, but exit code 1 for
/// scripts (its verdict and reasons are already on stdout).
#[derive(Debug, Clone)]
pub struct Incompatible;

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the schema is not compatible")
    }
}

impl std::error::Error for Incompatible {}

/// A connection to one schema registry.
struct Registry {
    base: Url,
    http: HttpClient,
}

impl Registry {
    fn new(registry: &str) -> anyhow::Result<Self> {
        let http = HttpClient::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Registry { base: parse_registry(registry)?, http })
    }

    /// The URL of `segments` (each percent-encoded as one segment: subjects may hold `/` or
    /// `:`) under the base URL, with the query parameters that are present.
    fn url(&self, segments: &[&str], query: &[(&str, Option<&str>)]) -> anyhow::Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            // URL normalization would drop or collapse such a segment and reach another route.
            return Err(Usage(format!("{bad:?} cannot be used as a subject name over HTTP")).into());
        }
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| anyhow!("the registry URL cannot hold a path"))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        let present: Vec<(&str, &str)> = query.iter().filter_map(|(name, v)| v.map(|v| (*name, v))).collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        Ok(url)
    }

    fn get(&self, url: Url) -> anyhow::Result<Value> {
        self.call(Method::GET, url, None)
    }

    /// Sends one request (a JSON body when given) and reads its JSON reply.
    fn call(&self, method: Method, url: Url, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request: RequestBuilder =
            self.http.request(method, url.clone()).header(ACCEPT, format!("{MEDIA_TYPE}, application/json"));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, MEDIA_TYPE).body(body.to_string());
        }
        let response = request.send().map_err(|e| self.transport_error(e, &url))?;
        let status = response.status();
        let text = read_bounded(response, &url)?;
        if !status.is_success() {
            return Err(RegistryError::from_body(status, &text).into());
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("the registry's reply to {url} is not JSON"))
    }

    /// Explains a failure below HTTP: the registry is not there, too slow, or went away.
    fn transport_error(&self, error: reqwest::Error, url: &Url) -> anyhow::Error {
        let mut cause: &dyn std::error::Error = &error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let message = if error.is_connect() {
            format!(
                "cannot connect to the schema registry at {} ({cause}); is it running? `evident serve` \
                 serves one on --registry-addr; or point --registry / EVIDENT_REGISTRY_URL at it",
                self.base
            )
        } else if error.is_timeout() {
            format!("the schema registry at {} did not answer {} in time", self.base, url.path())
        } else {
            format!("request to {url} failed: {cause}")
        };
        anyhow!(Unreachable(message))
    }
}

/// Reads a reply's body, refusing one larger than [`REPLY_MAX_BYTES`].
fn read_bounded(response: Response, url: &Url) -> anyhow::Result<String> {
    if response.content_length().is_some_and(|n| n > REPLY_MAX_BYTES) {
        anyhow::bail!("the registry's reply to {url} is larger than {REPLY_MAX_BYTES} bytes");
    }
    let mut body = Vec::new();
    response
        .take(REPLY_MAX_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| anyhow!(Unreachable(format!("reading the registry's reply to {url}: {e}"))))?;
    if body.len() as u64 > REPLY_MAX_BYTES {
        anyhow::bail!("the registry's reply to {url} is larger than {REPLY_MAX_BYTES} bytes");
    }
    String::from_utf8(body).with_context(|| format!("the registry's reply to {url} is not UTF-8"))
}

/// Parses `--registry`: a URL, or `host:port` to which `http://` is added. Only plain HTTP is
/// built in, so `https://` is refused here with a clear message.
fn parse_registry(registry: &str) -> anyhow::Result<Url> {
    let text = registry.trim();
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let url = Url::parse(&with_scheme).map_err(|e| Usage(format!("--registry {registry:?} is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(Usage(format!(
            "--registry {registry:?}: only http:// is supported (this build of evident has no TLS)"
        ))
        .into());
    }
    if url.cannot_be_a_base() || url.host().is_none() || url.query().is_some() {
        return Err(Usage(format!("--registry {registry:?} is not an http://host:port[/path] URL")).into());
    }
    Ok(url)
}

/// Parses a VERSION argument: a positive number or `latest` (also Confluent's `-1`).
fn parse_version(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("latest") || text == "-1" {
        return Ok("latest".to_owned());
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n.to_string()),
        _ => Err(format!("a version is a number from 1 or `latest`, not {text:?}")),
    }
}

/// Parses `--reference NAME=SUBJECT:VERSION`. The subject is everything between the first `=`
/// and the last `:` (a subject may hold `:` for Confluent's contexts).
fn parse_reference(text: &str) -> Result<Reference, String> {
    let shape = || format!("expected NAME=SUBJECT:VERSION (e.g. customer.avsc=customer-value:1), got {text:?}");
    let (name, rest) = text.split_once('=').ok_or_else(shape)?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(shape)?;
    if name.is_empty() || subject.is_empty() {
        return Err(shape());
    }
    let version = match version {
        "latest" => -1,
        v => match v.parse::<u32>() {
            Ok(n) if n >= 1 => i64::from(n),
            _ => return Err(format!("a reference's version is a number from 1 or `latest`, not {v:?}")),
        },
    };
    Ok(Reference { name: name.to_owned(), subject: subject.to_owned(), version })
}

/// Reads a schema file (`-`: stdin), within [`SCHEMA_FILE_MAX_BYTES`].
fn read_schema(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(SCHEMA_FILE_MAX_BYTES + 1).read_to_string(&mut text)
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Usage(format!("cannot open the schema file {}: {e}", path.display())))?;
        file.take(SCHEMA_FILE_MAX_BYTES + 1).read_to_string(&mut text)
    };
    read.map_err(|e| Usage(format!("cannot read the schema file {}: {e}", path.display())))?;
    if text.len() as u64 > SCHEMA_FILE_MAX_BYTES {
        return Err(
            Usage(format!("the schema file {} is larger than {SCHEMA_FILE_MAX_BYTES} bytes", path.display())).into()
        );
    }
    if text.trim().is_empty() {
        return Err(Usage(format!("the schema file {} is empty", path.display())).into());
    }
    Ok(text)
}

impl SchemaInput {
    /// The request body Confluent's register, lookup and compatibility routes take.
    fn body(&self) -> anyhow::Result<Value> {
        let schema = read_schema(&self.file)?;
        let format = self.format.unwrap_or_else(|| SchemaFormat::from_path(&self.file));
        let mut body = Map::new();
        body.insert("schema".into(), json!(schema));
        // Confluent leaves AVRO out (it is the default); older registries know no other value.
        if format != SchemaFormat::Avro {
            body.insert("schemaType".into(), json!(format.as_confluent()));
        }
        if !self.references.is_empty() {
            let references: Vec<Value> = self
                .references
                .iter()
                .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
                .collect();
            body.insert("references".into(), Value::Array(references));
        }
        Ok(Value::Object(body))
    }

    fn normalize(&self) -> Option<&'static str> {
        self.normalize.then_some("true")
    }
}

/// Runs a schema subcommand.
pub fn run(args: SchemasArgs) -> anyhow::Result<()> {
    let registry = Registry::new(&args.registry.registry)?;
    let json = args.registry.json;
    match args.command {
        SchemasCommand::List { deleted } => list(&registry, deleted, json),
        SchemasCommand::Get { subject, at, id, deleted } => match (subject, id) {
            (_, Some(id)) => get_by_id(&registry, id, json),
            (Some(subject), None) => {
                let version = at.unwrap_or_else(|| "latest".to_owned());
                let deleted = deleted.then_some("true");
                let url = registry.url(&["subjects", &subject, "versions", &version], &[("deleted", deleted)])?;
                let reply = registry.get(url)?;
                if json {
                    return Ok(output::print_json(&reply)?);
                }
                Ok(output::print_text(&schema_text(&reply))?)
            }
            (None, None) => Err(Usage("give a SUBJECT or --id".into()).into()),
        },
        SchemasCommand::Register { subject, input } => register(&registry, &subject, &input, json),
        SchemasCommand::Check { subject, input, version, verbose } => {
            let version = version.unwrap_or_else(|| "latest".to_owned());
            let url = registry.url(
                &["compatibility", "subjects", &subject, "versions", &version],
                &[("verbose", verbose.then_some("true")), ("normalize", input.normalize())],
            )?;
            let reply = registry.call(Method::POST, url, Some(&input.body()?))?;
            let compatible = reply.get("is_compatible").and_then(Value::as_bool).ok_or_else(|| {
                anyhow!("the registry's reply has no is_compatible: {}", output::truncate(&reply.to_string(), 300))
            })?;
            if json {
                output::print_json(&reply)?;
            } else if compatible {
                output::print_text(&format!("Compatible with {subject} version {version}."))?;
            } else {
                let mut text = format!("Not compatible with {subject} version {version}.");
                let messages = reply.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
                for message in &messages {
                    text.push_str("\n  - ");
                    text.push_str(&output::cell(Some(message)));
                }
                if !verbose {
                    text.push_str("\n(--verbose asks the registry for the reasons)");
                } else if messages.is_empty() {
                    text.push_str("\n(the registry gave no reasons)");
                }
                output::print_text(&text)?;
            }
            if compatible {
                Ok(())
            } else {
                Err(Incompatible.into())
            }
        }
        SchemasCommand::Delete { subject, at, permanent } => {
            let permanent_param = permanent.then_some("true");
            let kind = if permanent { "permanently" } else { "soft-" };
            match at {
                None => {
                    let url = registry.url(&["subjects", &subject], &[("permanent", permanent_param)])?;
                    let reply = registry.call(Method::DELETE, url, None)?;
                    if json {
                        return Ok(output::print_json(&reply)?);
                    }
                    let versions = versions_text(&reply);
                    Ok(output::print_text(&format!("Deleted subject {subject} ({kind}deleted versions {versions})."))?)
                }
                Some(version) => {
                    let url = registry
                        .url(&["subjects", &subject, "versions", &version], &[("permanent", permanent_param)])?;
                    let reply = registry.call(Method::DELETE, url, None)?;
                    if json {
                        return Ok(output::print_json(&reply)?);
                    }
                    let deleted = output::cell(Some(&reply));
                    Ok(output::print_text(&format!("Deleted {subject} version {deleted} ({kind}deleted)."))?)
                }
            }
        }
        SchemasCommand::Config { subject, set, delete } => config(&registry, subject.as_deref(), set, delete, json),
    }
}

/// `schemas list`: each subject with its latest version. `--json` prints
/// `[{"subject", "version", "id", "schemaType", "deleted"}]`.
fn list(registry: &Registry, deleted: bool, json: bool) -> anyhow::Result<()> {
    let live = string_list(registry.get(registry.url(&["subjects"], &[])?)?, "a list of subjects")?;
    let subjects = if deleted {
        string_list(registry.get(registry.url(&["subjects"], &[("deleted", Some("true"))])?)?, "a list of subjects")?
    } else {
        live.clone()
    };
    let mut rows = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let is_deleted = !live.contains(&subject);
        let url = registry
            .url(&["subjects", &subject, "versions", "latest"], &[("deleted", is_deleted.then_some("true"))])?;
        let latest = match registry.get(url) {
            Ok(latest) => latest,
            // A subject can vanish between the two requests, or have only deleted versions a
            // registry does not show: list it without a version rather than fail.
            Err(e) if e.downcast_ref::<RegistryError>().is_some_and(|r| r.is(40401) || r.is(40402)) => Value::Null,
            Err(e) => return Err(e),
        };
        rows.push(json!({
            "subject": subject,
            "version": latest.get("version"),
            "id": latest.get("id"),
            "schemaType": schema_type(&latest),
            "deleted": is_deleted,
        }));
    }
    rows.sort_by(|a, b| a["subject"].as_str().cmp(&b["subject"].as_str()));
    if json {
        return Ok(output::print_json(&Value::Array(rows))?);
    }
    if rows.is_empty() {
        return Ok(output::print_text("No subjects.")?);
    }
    let mut headers = vec!["SUBJECT", "VERSION", "ID", "TYPE"];
    if deleted {
        headers.push("DELETED");
    }
    let mut table = output::table(&headers);
    for row in &rows {
        let mut cells =
            vec![output::cell(row.get("subject")), output::cell(row.get("version")), output::cell(row.get("id"))];
        cells.push(if row["version"].is_null() { "-".to_owned() } else { output::cell(row.get("schemaType")) });
        if deleted {
            cells.push(output::cell(row.get("deleted")));
        }
        table.add_row(cells);
    }
    Ok(output::print_table(&table)?)
}

/// `schemas get --id N`: the schema and where it is registered. `--json` prints the registry's
/// `/schemas/ids/N` reply with `id` and `versions` (its `[{"subject", "version"}]`) added.
fn get_by_id(registry: &Registry, id: u32, json: bool) -> anyhow::Result<()> {
    let id_text = id.to_string();
    let mut reply = registry.get(registry.url(&["schemas", "ids", &id_text], &[])?)?;
    // Where it is registered: shown when the registry answers (older ones lack the route).
    let versions = match registry.get(registry.url(&["schemas", "ids", &id_text, "versions"], &[])?) {
        Ok(versions) => versions,
        Err(e) if e.downcast_ref::<RegistryError>().is_some() => Value::Null,
        Err(e) => return Err(e),
    };
    if let Value::Object(map) = &mut reply {
        map.insert("id".into(), json!(id));
        if !versions.is_null() {
            map.insert("versions".into(), versions);
        }
    }
    if json {
        return Ok(output::print_json(&reply)?);
    }
    Ok(output::print_text(&schema_text(&reply))?)
}

/// `schemas register`: registers, then looks the schema up for its version (Confluent's
/// register reply holds only the id). `--json` prints `{"subject", "id", "version"}`.
fn register(registry: &Registry, subject: &str, input: &SchemaInput, json: bool) -> anyhow::Result<()> {
    let body = input.body()?;
    let url = registry.url(&["subjects", subject, "versions"], &[("normalize", input.normalize())])?;
    let reply = registry.call(Method::POST, url, Some(&body))?;
    let id = reply.get("id").cloned().ok_or_else(|| anyhow!("the registry's reply has no id: {reply}"))?;
    let version = match reply.get("version") {
        Some(version) => version.clone(),
        None => {
            let url = registry.url(&["subjects", subject], &[("normalize", input.normalize())])?;
            registry.call(Method::POST, url, Some(&body))?.get("version").cloned().unwrap_or(Value::Null)
        }
    };
    if json {
        return Ok(output::print_json(&json!({"subject": subject, "id": id, "version": version}))?);
    }
    Ok(output::print_text(&format!(
        "Registered {subject} version {} (schema id {}).",
        output::cell(Some(&version)),
        output::cell(Some(&id))
    ))?)
}

/// `schemas config`: shows, sets or removes a compatibility level.
fn config(
    registry: &Registry,
    subject: Option<&str>,
    set: Option<String>,
    delete: bool,
    json: bool,
) -> anyhow::Result<()> {
    let segments: Vec<&str> = match subject {
        Some(subject) => vec!["config", subject],
        None => vec!["config"],
    };
    let url = registry.url(&segments, &[])?;
    let scope = subject.map_or_else(|| "global".to_owned(), |s| format!("subject {s}"));
    if let Some(level) = set {
        let reply =
            registry.call(Method::PUT, url, Some(&json!({"compatibility": level.trim().to_ascii_uppercase()})))?;
        if json {
            return Ok(output::print_json(&reply)?);
        }
        let level = reply.get("compatibility").or_else(|| reply.get("compatibilityLevel"));
        return Ok(output::print_text(&format!("Compatibility of {scope} set to {}.", output::cell(level)))?);
    }
    if delete {
        let reply = registry.call(Method::DELETE, url, None)?;
        if json {
            return Ok(output::print_json(&reply)?);
        }
        return Ok(output::print_text(&format!(
            "Removed the compatibility level of {scope}; the global one applies."
        ))?);
    }
    let (reply, inherited) = match registry.get(url) {
        Ok(reply) => (reply, false),
        // 40408: the subject has no level of its own (Confluent), so the global one applies.
        Err(e) if subject.is_some() && e.downcast_ref::<RegistryError>().is_some_and(|r| r.is(40408)) => {
            (registry.get(registry.url(&["config"], &[])?)?, true)
        }
        Err(e) => return Err(e),
    };
    if json {
        return Ok(output::print_json(&reply)?);
    }
    let level = output::cell(reply.get("compatibilityLevel").or_else(|| reply.get("compatibility")));
    let note = if inherited { " (the global level; the subject has none of its own)" } else { "" };
    Ok(output::print_text(&format!("{level}{note}"))?)
}

/// A reply that must be a list of strings (subject names).
fn string_list(reply: Value, what: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_value(reply).with_context(|| format!("the registry's reply is not {what}"))
}

/// A schema's format from a reply: Confluent leaves `schemaType` out for Avro.
fn schema_type(reply: &Value) -> Value {
    match reply.get("schemaType") {
        Some(Value::String(t)) => json!(t),
        _ if reply.is_null() => Value::Null,
        _ => json!("AVRO"),
    }
}

/// A list of versions from a delete reply (`[1, 2]`), as `1, 2`.
fn versions_text(reply: &Value) -> String {
    match reply.as_array() {
        Some(versions) => versions.iter().map(|v| output::cell(Some(v))).collect::<Vec<_>>().join(", "),
        None => output::cell(Some(reply)),
    }
}

/// A schema reply for people: its fields, its references, then the schema itself (JSON
/// pretty-printed; Protobuf as it is).
fn schema_text(reply: &Value) -> String {
    let mut fields = output::table(&["FIELD", "VALUE"]);
    for name in ["subject", "version", "id"] {
        if let Some(value) = reply.get(name) {
            fields.add_row(vec![name.to_owned(), output::cell(Some(value))]);
        }
    }
    fields.add_row(vec!["type".to_owned(), output::cell(Some(&schema_type(reply)))]);
    if let Some(Value::Array(versions)) = reply.get("versions") {
        for v in versions {
            fields.add_row(vec![
                "registered".to_owned(),
                format!("{} version {}", output::cell(v.get("subject")), output::cell(v.get("version"))),
            ]);
        }
    }
    if let Some(Value::Array(references)) = reply.get("references") {
        for r in references {
            fields.add_row(vec![
                "reference".to_owned(),
                format!(
                    "{} = {} version {}",
                    output::cell(r.get("name")),
                    output::cell(r.get("subject")),
                    output::cell(r.get("version"))
                ),
            ]);
        }
    }
    let schema = reply.get("schema").and_then(Value::as_str).unwrap_or_default();
    let pretty = serde_json::from_str::<Value>(schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| schema.to_owned());
    format!("{}\n\n{}", output::render_table(&fields), pretty.trim_end())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    /// The command as `main.rs` nests it: with the program's `--version` propagated, which
    /// the schema subcommands must not collide with.
    #[derive(Debug, Parser)]
    #[command(name = "evident", version, propagate_version = true)]
    struct Cli {
        #[command(flatten)]
        args: SchemasArgs,
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["evident", "check", "s", "f.avsc", "--version", "2", "--json"]).unwrap();
        assert!(cli.args.registry.json);
        assert!(matches!(cli.args.command, SchemasCommand::Check { version: Some(v), .. } if v == "2"));
    }

    #[test]
    fn references() {
        assert_eq!(
            parse_reference("customer.avsc=customer-value:3").unwrap(),
            Reference { name: "customer.avsc".into(), subject: "customer-value".into(), version: 3 }
        );
        // A context-qualified subject keeps its colons; the version is after the last one.
        assert_eq!(parse_reference("c=:.ctx:customer:latest").unwrap().subject, ":.ctx:customer");
        assert_eq!(parse_reference("c=s:latest").unwrap().version, -1);
        for bad in ["c", "c=s", "=s:1", "c=:1", "c=s:0", "c=s:x"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_and_formats() {
        assert_eq!(parse_version("latest").unwrap(), "latest");
        assert_eq!(parse_version("-1").unwrap(), "latest");
        assert_eq!(parse_version("7").unwrap(), "7");
        assert!(parse_version("0").is_err());
        assert!(parse_version("x").is_err());
        assert_eq!(SchemaFormat::from_path(Path::new("a/order.proto")), SchemaFormat::Protobuf);
        assert_eq!(SchemaFormat::from_path(Path::new("order.JSON")), SchemaFormat::Json);
        assert_eq!(SchemaFormat::from_path(Path::new("order.avsc")), SchemaFormat::Avro);
        assert_eq!(SchemaFormat::from_path(Path::new("-")), SchemaFormat::Avro);
    }

    #[test]
    fn registry_urls_and_errors() {
        let registry = Registry::new("127.0.0.1:8081").unwrap();
        let url = registry.url(&["subjects", "a/b c", "versions"], &[("normalize", Some("true"))]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/subjects/a%2Fb%20c/versions?normalize=true");
        let prefixed = Registry::new("http://h:1/apis/ccompat/v7").unwrap();
        assert_eq!(prefixed.url(&["config"], &[("x", None)]).unwrap().as_str(), "http://h:1/apis/ccompat/v7/config");
        assert!(registry.url(&["subjects", ".."], &[]).is_err());
        assert!(Registry::new("https://h").is_err());
        let error = RegistryError::from_body(
            StatusCode::NOT_FOUND,
            r#"{"error_code":40401,"message":"Subject 'x' not found."}"#,
        );
        assert_eq!(error.to_string(), "Subject 'x' not found. (error_code 40401, HTTP 404)");
        assert_eq!(
            error.document(),
            json!({"error": {"code": "registry", "error_code": 40401, "message": "Subject 'x' not found.", "status": 404}})
        );
        let error = RegistryError::from_body(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert_eq!(error.to_string(), "<html>proxy</html> (HTTP 502)");
    }

    #[test]
    fn schema_replies_for_people() {
        let reply = json!({"subject": "orders-OrderPlaced", "version": 2, "id": 7, "schemaType": "JSON",
            "references": [{"name": "m.json", "subject": "money", "version": 1}],
            "schema": "{\"type\":\"object\"}"});
        let text = schema_text(&reply);
        assert!(text.contains("type       JSON"), "{text}");
        assert!(text.contains("reference  m.json = money version 1"), "{text}");
        assert!(text.ends_with("{\n  \"type\": \"object\"\n}"), "{text}");
        assert_eq!(schema_type(&json!({"schema": "\"string\""})), json!("AVRO"));
        assert_eq!(versions_text(&json!([1, 2])), "1, 2");
    }
}
