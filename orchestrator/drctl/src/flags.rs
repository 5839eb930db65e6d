//! The flags, as clap parses them: raw input, no behaviour. `commands`
//! resolves them (through `context`) and runs them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use drctl_core::Scope;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "drctl",
    version,
    about = "Disaster-recovery and replication orchestrator",
    long_about = None,
    after_help = crate::help::DRCTL
)]
pub struct Cli {
    /// Where drctl keeps its state: sqlite://PATH (the embedded default).
    #[arg(long, global = true, env = "DRCTL_STATE", default_value = drctl_state::DEFAULT_URL, value_name = "URL")]
    pub state: String,
    /// How log events are written to stderr (filter them with RUST_LOG, e.g. `RUST_LOG=drctl=info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event (for a log pipeline).
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

// Parsed once per process and matched at once: the size of the largest
// variant (`serve`'s flags) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a topology file and every runbook it references; report every problem at once.
    #[command(after_help = crate::help::VALIDATE)]
    Validate {
        #[command(flatten)]
        file: FileArg,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show what a failover would do, in what order, and whether it meets the RTO targets.
    #[command(after_help = crate::help::PLAN)]
    Plan {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        scope: ScopeArgs,
        /// At most this many steps at once (default: no cap).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Draw the dependency graph (Graphviz DOT or Mermaid), highlighting what a disaster would affect.
    #[command(after_help = crate::help::GRAPH)]
    Graph {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Graphviz DOT (`| dot -Tsvg`) or Mermaid (renders in GitHub and most wikis).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the IAM policy (JSON) that allows exactly the AWS calls drctl makes for this topology and use,
    /// on the resources it names.
    #[command(after_help = crate::help::IAM_POLICY, name = "iam-policy")]
    IamPolicy {
        #[command(flatten)]
        file: FileArg,
        /// What the credentials are for: `serve` does everything but `discover`; `plan` makes no AWS call;
        /// `backup` is pgBackRest's S3 repository, `restore` RDS and S3 restores and restore tests, `erase`
        /// the S3 versions under `erasure:` prefixes.
        #[arg(long = "for", default_value = "serve", value_parser = drctl_control::policy::USE_NAMES.to_vec(), value_name = "USE")]
        for_use: String,
        /// The AWS account id in RDS and IAM ARNs (default `*`: any account).
        #[arg(long, value_name = "ID")]
        account: Option<String>,
    },
    /// Read an AWS account (RDS instances and replicas, Aurora clusters, replicating S3 buckets, Route53
    /// failover and weighted records) and print a topology skeleton to start drctl.yaml from.
    #[command(after_help = crate::help::DISCOVER)]
    Discover {
        /// A region to read (repeat for more); default: the SDK's region (AWS_REGION, the profile).
        #[arg(long = "region", value_name = "REGION")]
        regions: Vec<String>,
        /// YAML with a comment at every decision left to you, or JSON (no comments).
        #[arg(long, value_parser = ["yaml", "json"], default_value = "yaml")]
        output: String,
    },
    /// Measure every datastore's replicas and RPO, and every service's health, now.
    #[command(after_help = crate::help::STATUS)]
    Status {
        #[command(flatten)]
        file: FileArg,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Measure again every 2 seconds until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Would the failover of each zone and region work now? Plan and check every scope without acting.
    #[command(after_help = crate::help::READINESS)]
    Readiness {
        #[command(flatten)]
        file: FileArg,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Copy new and changed objects of `by: drctl` S3 datastores to their replicas.
    #[command(after_help = crate::help::REPLICATE)]
    Replicate {
        #[command(flatten)]
        file: FileArg,
        /// One pass, then exit (default: run on each datastore's schedule until interrupted).
        #[arg(long)]
        once: bool,
        /// Only these datastores (default: every `by: drctl` one).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Resolve a conflict instead (one datastore NAME): the key of the object replication left alone.
        #[arg(long, value_name = "KEY", requires = "zone", requires = "resolution", conflicts_with = "resolve_all")]
        resolve: Option<String>,
        /// Resolve every recorded conflict of the NAMEd datastores (default: all), in --zone only when given.
        #[arg(long, requires = "resolution")]
        resolve_all: bool,
        /// The zone of the conflicting object's bucket (with --resolve; narrows --resolve-all).
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
        /// How to resolve it: keep it as it is (replication leaves it alone), discard it (the next pass
        /// replaces or deletes it), or copy it aside into the primary under drctl-conflicts/ZONE/KEY, then discard it.
        #[arg(long, value_enum, value_name = "HOW")]
        resolution: Option<Resolution>,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Declare a disaster: plan, check, then fail over with a durable journal.
    #[command(after_help = crate::help::DECLARE)]
    Declare {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why (kept in the journal and shown everywhere).
        #[arg(long)]
        reason: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Plan and run the preflight checks; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// At most this many steps at once (default: no cap).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
    },
    /// Run a paused execution's failed step again, optionally lifting the check that failed it.
    #[command(after_help = crate::help::RETRY)]
    Retry {
        #[command(flatten)]
        file: FileArg,
        /// The execution id (the first line `drctl declare` printed; see `drctl executions`).
        id: String,
        /// The failed step, e.g. `orders-db/failover` (see `drctl show ID`).
        step: String,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Give up a paused execution's failed step and every step that needs it; the rest goes on.
    #[command(after_help = crate::help::SKIP)]
    Skip {
        #[command(flatten)]
        file: FileArg,
        /// The execution id (see `drctl executions`).
        id: String,
        /// The failed step to give up (see `drctl show ID`).
        step: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Resume an execution interrupted by a crash; finished steps do not run again.
    #[command(after_help = crate::help::RESUME)]
    Resume {
        #[command(flatten)]
        file: FileArg,
        /// The execution id (the first line `drctl declare` printed; see `drctl executions`).
        id: String,
    },
    /// Approve a step waiting for approval, decide on a step a crash interrupted, or record a failed step as done by hand.
    #[command(after_help = crate::help::APPROVE)]
    Approve {
        #[command(flatten)]
        store: StoreArgs,
        /// The execution id (the first line `drctl declare` printed; see `drctl executions`).
        id: String,
        /// The step id, e.g. `payments/approve` (see `drctl show ID`).
        step: String,
        /// The step's effect did happen (a step a crash interrupted, or a failed step done by hand): record it as done without running it.
        #[arg(long)]
        done: bool,
        /// Who approves (default: your login name).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Stop an execution: running steps finish, the rest is skipped; a paused one stops at once.
    #[command(after_help = crate::help::ABORT)]
    Abort {
        #[command(flatten)]
        store: StoreArgs,
        /// The execution id (see `drctl executions`).
        id: String,
    },
    /// List executions, newest first.
    #[command(after_help = crate::help::EXECUTIONS)]
    Executions {
        #[command(flatten)]
        store: StoreArgs,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show an execution: its steps and the measured RTO.
    #[command(after_help = crate::help::SHOW)]
    Show {
        /// The execution id (the first line `drctl declare` printed; see `drctl executions`).
        id: String,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The topology (for RTO targets) whose state store holds the execution.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the JSON Schema of the topology file (for editors).
    #[command(after_help = crate::help::SCHEMA)]
    Schema,
    /// The controller: sample RPO, replicate, run scheduled drills, resume executions, serve the status page and API.
    #[command(after_help = crate::help::SERVE)]
    Serve {
        #[command(flatten)]
        file: FileArg,
        /// The address to serve the status page and the API on.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// CA certificates (PEM) that sign the other controllers' certificates, trusted when forwarding to the leader.
        #[arg(long, value_name = "PEM")]
        peer_ca: Option<PathBuf>,
        /// Only these networks may use the operator API (repeatable; default: any).
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<drctl_serve::Cidr>,
        /// How often RPO and health are measured.
        #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        sample_every: std::time::Duration,
        /// The page's public URL, for the links in its feeds.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// How long shutdown waits for running tasks.
        #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
        shutdown_deadline: std::time::Duration,
        /// This controller's id among those sharing an etcd state (default: host name and port).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// The URL the other controllers forward operator requests to (default: the served URL).
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// With --state etcd://: the leader's lease; a leader cut off stops acting before it runs out.
        #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        lease_ttl: std::time::Duration,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        notify: NotifyArgs,
        #[command(flatten)]
        readiness: ReadinessArgs,
    },
    /// API tokens for the controller's operator API.
    #[command(after_help = crate::help::TOKEN)]
    Token(TokenArgs),
    /// Who the status page tells: e-mail and webhook subscriptions.
    #[command(after_help = crate::help::SUBSCRIPTIONS)]
    Subscriptions(SubscriptionsArgs),
    /// The append-only, hash-chained audit log.
    #[command(after_help = crate::help::AUDIT)]
    Audit(AuditArgs),
    /// The keys kept outside the state store (what seals secrets and addresses, and the audit key).
    #[command(after_help = crate::help::KEYS)]
    Keys(KeysArgs),
    /// A link that opens one customer's contract page in a browser: signed, expiring, revocable.
    #[command(name = "customer-link", args_conflicts_with_subcommands = true, after_help = crate::help::CUSTOMER_LINK)]
    CustomerLink(CustomerLinkArgs),
    /// The status page, for hosting elsewhere.
    #[command(after_help = crate::help::STATUS_PAGE, subcommand, name = "status-page")]
    StatusPage(StatusPageCommand),
    /// A real multi-zone environment on this machine: PostgreSQL pair, S3 per zone, DNS, services, workload.
    #[command(after_help = crate::help::LAB, subcommand)]
    Lab(LabCommand),
    /// Run a chaos experiment as a DR drill: inject, detect, fail over, measure RTO and RPO, heal, report.
    #[command(after_help = crate::help::DRILL)]
    Drill {
        /// The experiment file (chaos/*.yaml).
        experiment: PathBuf,
        /// The topology to drill (default drctl.yaml; ignored with --lab).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Start a lab for the drill and stop it afterwards.
        #[arg(long)]
        lab: bool,
        /// Where the lab lives (with --lab).
        #[arg(long, default_value = ".drctl/lab", value_name = "DIR")]
        lab_dir: PathBuf,
        /// The lab's first port (with --lab).
        #[arg(long, default_value_t = drctl_lab::lab::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Where to write report.json, report.md and report.html (default .drctl/reports/ID).
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// List what each fault would hit; inject nothing.
        #[arg(long)]
        dry_run: bool,
        /// A restore test: keep the restored copy running this long for inspection (e.g. 1h).
        #[arg(long, value_name = "DURATION")]
        keep: Option<String>,
        /// At most this many steps at once (default: no cap).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List what each datastore's backups can restore: earliest and latest points, the backup RPO, the last backup and restore test.
    #[command(after_help = crate::help::BACKUPS)]
    Backups {
        #[command(flatten)]
        file: FileArg,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Take one backup of a datastore now (PostgreSQL through pgBackRest).
    #[command(after_help = crate::help::BACKUP)]
    Backup {
        #[command(flatten)]
        file: FileArg,
        /// The datastore to back up.
        datastore: String,
        /// full, diff (changes since the last full) or incr (changes since the last backup).
        #[arg(long, value_enum, default_value_t = BackupKind::Full)]
        kind: BackupKind,
    },
    /// Restore a datastore to a point in time, into a new copy beside it or, with --replace, in its primary's place (journaled; `drctl resume ID` continues it).
    #[command(after_help = crate::help::RESTORE)]
    Restore {
        #[command(flatten)]
        file: FileArg,
        /// The datastore to restore.
        datastore: String,
        /// The point: `latest`, an RFC 3339 time (2026-12-06T10:00:00Z) or a duration ago (-15m).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        to: String,
        /// The copy's name (default DATASTORE-ID); for S3, a bucket and an optional prefix (`BUCKET/PREFIX`).
        #[arg(long, value_name = "NAME")]
        into: Option<String>,
        /// S3: only the keys under this prefix.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Put the restored copy in the primary's place: the primary is fenced, the copy takes its address, the standbys are rebuilt from it (opens an incident). RDS instance: the old primary is renamed aside, the restored instance takes its identifier, read replicas are made again.
        #[arg(long)]
        replace: bool,
        /// With --replace: go on beside this member although it can be fenced neither way (repeatable; as a refusal prints it).
        #[arg(long = "unfenced", value_name = "DATASTORE/ZONE")]
        unfenced: Vec<String>,
        /// Why (kept in the journal and the audit log).
        #[arg(long)]
        reason: String,
        /// Say what would be done and how long it should take; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Erase a person's data from every copy: record the request, erase it on each primary, verify every replica.
    #[command(after_help = crate::help::ERASE)]
    Erase {
        #[command(flatten)]
        file: FileArg,
        /// The subject's identifier, as the topology's `locate` entries take it ($1, {subject}).
        subject: String,
        /// Why (a ticket, the request's reference); kept in the ledger and the audit log.
        #[arg(long)]
        reason: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// How long to wait for every copy to be verified; the controller goes on verifying after it.
        #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
        wait: std::time::Duration,
    },
    /// List erasure requests: when each was made, is due, was erased, and each copy verified; which backups still hold it.
    #[command(after_help = crate::help::ERASURES)]
    Erasures {
        #[command(flatten)]
        file: FileArg,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Run the pass the controller runs (erase on a changed primary, verify unverified copies) before listing.
        #[arg(long)]
        verify: bool,
    },
    /// Measure drctl's own speed.
    #[command(after_help = crate::help::BENCH, subcommand)]
    Bench(BenchCommand),
    /// Write drctl's man pages into DIR: drctl.1 and one per command (drctl-lab-up.1, ...).
    #[command(hide = true, after_help = crate::help::MAN)]
    Man {
        /// The folder to write them into (created if needed), e.g. /usr/local/share/man/man1.
        dir: PathBuf,
    },
    /// Print shell completions (e.g. `drctl completions bash > /etc/bash_completion.d/drctl`).
    #[command(after_help = crate::help::COMPLETIONS)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Which state store a command that reads or changes executions, tokens,
/// subscriptions or the audit log uses: the one its topology file uses (a
/// lab's topology means the lab's store), unless `--state` or `DRCTL_STATE`
/// names one. Every such command includes it, so `-f` means the same
/// everywhere and a hint drctl prints works when typed as printed.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The topology file whose state store to use (a lab's topology: the lab's store); --state wins.
    #[arg(short = 'f', long = "file", global = true, default_value = drctl_core::hint::DEFAULT_FILE, value_name = "FILE")]
    pub file: PathBuf,
}

/// What a backup copies: everything, what changed since the last full, or since the last backup of any kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupKind {
    Full,
    Diff,
    Incr,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub cmd: TokenCommand,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub cmd: AuditCommand,
}

#[derive(Debug, Args)]
pub struct CustomerLinkArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The customer (a `customer:` of the topology's `contracts`) to make a link for.
    #[arg(value_name = "CUSTOMER")]
    pub customer: Option<String>,
    /// How long the link opens the page (at most 90 days).
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: std::time::Duration,
    /// The controller's public URL, which the link points at.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub base_url: String,
    #[command(subcommand)]
    pub cmd: Option<CustomerLinkCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CustomerLinkCommand {
    /// Every link: its customer, until when it works, whether it was revoked (never the secrets).
    #[command(after_help = crate::help::CUSTOMER_LINK_LIST)]
    List {
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Revoke a link: it, and every browser session opened with it, stop working at once.
    #[command(after_help = crate::help::CUSTOMER_LINK_REVOKE)]
    Revoke {
        /// The link's id (printed when it was made; see `drctl customer-link list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is kept).
    #[command(after_help = crate::help::TOKEN_CREATE)]
    Create {
        /// The token's name (shown in the audit log), or its id to revoke.
        #[arg(long)]
        name: String,
        /// viewer < operator < commander < admin; each includes the ones
        /// before. `customer` sees one customer's contract page and nothing
        /// else (give `--customer`).
        #[arg(long, value_parser = ["customer", "viewer", "operator", "commander", "admin"])]
        role: String,
        /// The customer a `customer` token sees: a `customer:` of the
        /// topology's `contracts`.
        #[arg(long, value_name = "NAME")]
        customer: Option<String>,
    },
    /// List tokens (never the secrets).
    #[command(after_help = crate::help::TOKEN_LIST)]
    List {
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Revoke a token by name or id.
    #[command(after_help = crate::help::TOKEN_REVOKE)]
    Revoke {
        /// The token's name or id (see `drctl token list`).
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The topology file; a lab's topology means the lab's state store.
    #[arg(short = 'f', long = "file", global = true, default_value = "drctl.yaml", value_name = "FILE")]
    pub file: PathBuf,
    #[command(subcommand)]
    pub cmd: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Where the keys are and their ids.
    #[command(after_help = crate::help::KEYS_SHOW)]
    Show,
    /// Add a fresh data key and audit key: new values are sealed and new
    /// audit entries chained under them; what older keys sealed still opens.
    #[command(after_help = crate::help::KEYS_ROTATE)]
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the audit log, oldest first.
    #[command(after_help = crate::help::AUDIT_LIST)]
    List {
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad entry.
    #[command(after_help = crate::help::AUDIT_VERIFY)]
    Verify {
        /// A head kept elsewhere earlier (the hash `verify` printed): the
        /// log must still contain it, so a removed tail is caught too.
        #[arg(long, value_name = "HASH", conflicts_with = "head_file")]
        head: Option<String>,
        /// A head file (DRCTL_AUDIT_HEAD_FILE, or the one `status-page export` writes): its last head must still be in the log.
        #[arg(long, value_name = "FILE")]
        head_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatusPageCommand {
    /// Measure now and write the page, its JSON and its feed into DIR (static hosting).
    #[command(after_help = crate::help::STATUS_PAGE)]
    Export {
        /// The folder to write the page into (created if needed).
        dir: PathBuf,
        #[command(flatten)]
        file: FileArg,
        /// The URL the copy will be served from.
        #[arg(long, default_value = "https://status.example.com", value_name = "URL")]
        base_url: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    drctl_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start the lab and keep it running until Ctrl-C or `drctl lab down`.
    #[command(after_help = crate::help::LAB_UP)]
    Up {
        /// Where the lab keeps its data, its lab.json and its drctl.yaml.
        #[arg(long, default_value = ".drctl/lab", value_name = "DIR")]
        dir: PathBuf,
        /// The first of the ports the lab uses (it needs about 100 above it).
        #[arg(long, default_value_t = drctl_lab::lab::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Run in the background and return once it is up.
        #[arg(long)]
        detach: bool,
        /// Also run an etcd member and a highly available controller
        /// (`drctl serve`) in each zone, the lab's state on that etcd.
        #[arg(long)]
        controllers: bool,
    },
    /// Stop a running lab (harmless when none runs).
    #[command(after_help = crate::help::LAB_DOWN)]
    Down {
        /// Where the lab keeps its data, its lab.json and its drctl.yaml.
        #[arg(long, default_value = ".drctl/lab", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Power a lab PostgreSQL member off out of band: the lab members' `fence` command.
    #[command(after_help = crate::help::LAB_POWER_OFF)]
    PowerOff {
        /// The lab's control API (default: the one in the lab folder's lab.json).
        #[arg(long, value_name = "HOST:PORT")]
        control: Option<String>,
        /// Where the lab keeps its lab.json (when --control is not given).
        #[arg(long, default_value = ".drctl/lab", value_name = "DIR")]
        dir: PathBuf,
        /// The datastore (the lab has orders-db).
        #[arg(long, default_value = "orders-db")]
        datastore: String,
        /// The zone of the member to power off, e.g. lab-az1.
        #[arg(long)]
        zone: String,
        /// Power nothing off: exit 0 when the control API answers and knows the member (the fence's `check`).
        #[arg(long)]
        check: bool,
    },
    /// What runs in the lab, which faults are in force, and the workload's progress.
    #[command(after_help = crate::help::LAB_STATUS)]
    Status {
        /// Where the lab keeps its data, its lab.json and its drctl.yaml.
        #[arg(long, default_value = ".drctl/lab", value_name = "DIR")]
        dir: PathBuf,
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// What to do with an object replication would not overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    Keep,
    Discard,
    CopyAside,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Parse, validate and plan synthetic topologies; report time and peak memory.
    #[command(after_help = crate::help::BENCH_PLAN)]
    Plan {
        /// Sizes to measure (entities).
        #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
        entities: Vec<usize>,
        /// Runs per size; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also schedule with this --parallel cap.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// Parse and validate topologies of N zones and N entities, for several N: time grows linearly.
    #[command(after_help = crate::help::BENCH_VALIDATE)]
    Validate {
        /// Sizes to measure: N zones and N entities each.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 30_000, 100_000])]
        sizes: Vec<usize>,
        /// Runs per size; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// One `status` pass over many S3 datastores served by an in-process endpoint.
    #[command(after_help = crate::help::BENCH_STATUS)]
    Status {
        /// How many S3 datastores to measure.
        #[arg(long, default_value_t = 1000)]
        datastores: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// One readiness evaluation of every zone: S3 datastores and services with health URLs, served by
    /// in-process endpoints that each answer after a delay.
    #[command(after_help = crate::help::BENCH_READINESS)]
    Readiness {
        /// How many S3 datastores (spread over 3 zones).
        #[arg(long, default_value_t = 1000)]
        datastores: usize,
        /// How many services, each with a health URL.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// How long every endpoint takes to answer, e.g. 50ms.
        #[arg(long, default_value = "50ms", value_parser = parse_duration, value_name = "DURATION")]
        delay: std::time::Duration,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A controller under a connection flood from one address (loopback only): the page and
    /// /api/v1/status probed from another address.
    #[command(after_help = crate::help::BENCH_CONNECTIONS)]
    Connections {
        /// Connections opened and left idle by the flooding address.
        #[arg(long, default_value_t = 1000)]
        idle: usize,
        /// Connections trickling a request's headers, a byte a second.
        #[arg(long, default_value_t = 500)]
        trickling: usize,
        /// Probes of each path from the other address.
        #[arg(long, default_value_t = 200)]
        probes: usize,
        /// The controller's --max-connections-per-address (a large one shows the flood without it).
        #[arg(long, default_value_t = 32)]
        per_address: usize,
    },
    /// A controller under a subscription flood from many loopback networks: what it accepts and
    /// refuses, its pending subscriptions, a viewer's latency, a subscriber's delay, its memory.
    #[command(after_help = crate::help::BENCH_SUBSCRIBE)]
    Subscribe {
        /// IPv4 /24 networks of 127.0.0.0/8 the flood comes from.
        #[arg(long, default_value_t = 2100)]
        networks: usize,
        /// Addresses per network, each sending one subscription.
        #[arg(long, default_value_t = 6)]
        per_network: usize,
        /// The flood stops after this many seconds, sent or not.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Engine overhead: a plan of no-op steps with a durable journal.
    #[command(after_help = crate::help::BENCH_ENGINE)]
    Engine {
        /// Entities of the synthetic topology (about 3/4 of them fail over).
        #[arg(long, default_value_t = 1334)]
        entities: usize,
        /// At most this many steps at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// The lab zone-outage drill several times: detection, RTO, lost writes (needs PostgreSQL).
    #[command(after_help = crate::help::BENCH_DRILL)]
    Drill {
        /// The experiment file (chaos/*.yaml).
        #[arg(long, default_value = "chaos/lab-zone-outage.yaml", value_name = "FILE")]
        experiment: PathBuf,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The lab's first port (it needs about 100 above it).
        #[arg(long, default_value_t = 26000)]
        base_port: u16,
    },
    /// Erase N subjects over a PostgreSQL primary and standby of the topology, and its S3 buckets if it has them: record, erase, verify each.
    #[command(after_help = crate::help::BENCH_ERASURE)]
    Erasure {
        #[command(flatten)]
        file: FileArg,
        /// Subjects to seed and erase (`bench-0` ... in the datastore's locate tables).
        #[arg(long, default_value_t = 10_000)]
        subjects: usize,
    },
    /// Compare the prioritised scheduler with plain tier-then-file-order list scheduling.
    #[command(after_help = crate::help::BENCH_SCHEDULER)]
    Scheduler {
        /// Generated topologies per parallelism cap.
        #[arg(long, default_value_t = 50)]
        topologies: usize,
        /// Entities per generated topology.
        #[arg(long, default_value_t = 300)]
        entities: usize,
    },
}

/// How often the controller evaluates readiness, and whom it tells of changes.
#[derive(Debug, Args)]
pub struct ReadinessArgs {
    /// How often the failover of every zone and region is evaluated, without acting (see docs/readiness.md).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub evaluate_every: std::time::Duration,
    /// The operators' webhook: told, signed as Standard Webhooks, when a scope becomes ready or not ready.
    #[arg(long, value_name = "URL", requires = "operator_webhook_secret")]
    pub operator_webhook: Option<String>,
    /// The operator webhook's signing secret (whsec_ and base64, as Standard Webhooks libraries take it).
    #[arg(long, env = "DRCTL_OPERATOR_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub operator_webhook_secret: Option<String>,
    /// The operators' e-mail address: told, through --smtp, when a scope becomes ready or not ready.
    #[arg(long, value_name = "ADDRESS", requires = "smtp")]
    pub operator_email: Option<String>,
}

impl From<ReadinessArgs> for drctl_serve::ReadinessOptions {
    fn from(a: ReadinessArgs) -> drctl_serve::ReadinessOptions {
        drctl_serve::ReadinessOptions {
            every: a.evaluate_every.max(std::time::Duration::from_millis(200)),
            webhook: a.operator_webhook,
            webhook_secret: a.operator_webhook_secret,
            email: a.operator_email,
            ..Default::default()
        }
    }
}

/// How the controller tells subscribers (e-mail, webhooks).
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The SMTP server e-mail goes through: smtps://HOST:PORT (TLS), smtp+starttls://HOST:PORT (STARTTLS
    /// required) or smtp://HOST:PORT; credentials as USER@HOST:PORT with the password in DRCTL_SMTP_PASSWORD,
    /// only over TLS (see docs/hardening.md). Without it, e-mail subscriptions are refused.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// Allow credentials over plain smtp:// (a relay on this machine): the password may travel in clear.
    #[arg(long)]
    pub smtp_insecure: bool,
    /// The From: of the e-mails drctl sends.
    #[arg(long, default_value = "drctl <status@localhost>", value_name = "ADDRESS")]
    pub smtp_from: String,
    /// The first retry of a failed delivery; each next waits twice as long (up to an hour); given up after a day.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub notify_retry: std::time::Duration,
    /// How often the outbox of notifications is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub notify_every: std::time::Duration,
    /// Let webhooks point at loopback and private addresses (a private deployment; off, an anonymous subscriber
    /// could make the controller POST into its own network).
    #[arg(long)]
    pub allow_private_webhooks: bool,
}

impl From<NotifyArgs> for drctl_serve::NotifyOptions {
    fn from(a: NotifyArgs) -> drctl_serve::NotifyOptions {
        drctl_serve::NotifyOptions {
            smtp: a.smtp,
            from: a.smtp_from,
            every: a.notify_every.max(std::time::Duration::from_millis(100)),
            retry_first: a.notify_retry,
            allow_private_webhooks: a.allow_private_webhooks,
            smtp_insecure: a.smtp_insecure,
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub cmd: SubscriptionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// Every subscription: its state (pending, active, unsubscribed), whether deliveries fail, how many went out.
    #[command(after_help = crate::help::SUBSCRIPTIONS)]
    List {
        /// Text for people, JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// What the controller's clients may take from it.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Connections open at once, all clients together; more wait until one closes.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Requests per second one client address may make (bursts of twice as many); past it, 429. 0: no limit.
    #[arg(long, default_value_t = 50, value_name = "PER_SECOND")]
    pub rate_limit: u32,
    /// How long a request may take to be answered (503 past it).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: std::time::Duration,
    /// How long a client may take to send a request's headers before its connection is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: std::time::Duration,
    /// Connections one client may hold open (an IPv4 address, an IPv6 /64); past it, closed at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_connections_per_address: usize,
    /// How long a client may take to send a request's body (408 past it).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub body_timeout: std::time::Duration,
    /// Also serve on this address, with connections of its own: operators reach the API there whatever
    /// load the public listener is under.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<std::net::SocketAddr>,
}

impl From<LimitArgs> for drctl_serve::Limits {
    fn from(a: LimitArgs) -> drctl_serve::Limits {
        drctl_serve::Limits {
            max_connections: a.max_connections,
            rate_per_s: a.rate_limit,
            request_timeout: a.request_timeout,
            header_timeout: a.header_timeout,
            per_address: a.max_connections_per_address,
            body_timeout: a.body_timeout,
            admin_listen: a.admin_listen,
        }
    }
}

/// The checks a declaration (or a retry) lifts, each by name; see docs/declaring.md.
#[derive(Debug, Args, Default)]
pub struct OverrideArgs {
    /// Promote a standby beyond its max_lag, or of unknown lag.
    #[arg(long)]
    pub accept_lag: bool,
    /// Promote before the standby replayed the fenced old primary's last write.
    #[arg(long)]
    pub skip_catch_up: bool,
    /// Promote beside this member although it can be fenced neither way (repeatable; as a refusal prints it).
    #[arg(long = "unfenced", value_name = "DATASTORE/ZONE")]
    pub unfenced: Vec<String>,
    /// --accept-lag and --skip-catch-up together; never waives a fence (that takes --unfenced).
    #[arg(long)]
    pub force: bool,
}

impl OverrideArgs {
    /// The named overrides (without `--force`'s).
    pub fn overrides(&self) -> drctl_control::overrides::Overrides {
        drctl_control::overrides::Overrides {
            accept_lag: self.accept_lag,
            skip_catch_up: self.skip_catch_up,
            unfenced: self.unfenced.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The topology file.
    #[arg(short = 'f', long = "file", default_value = "drctl.yaml", value_name = "FILE")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// A zone that is lost (repeatable).
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,
    /// A region that is lost (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// An entity to fail over (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
}

impl ScopeArgs {
    pub fn scope(&self) -> Scope {
        Scope { zones: self.zones.clone(), regions: self.regions.clone(), targets: self.targets.clone() }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument explains itself in `--help`.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "drctl", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    /// Every command's --help ends with an example and its exit codes, and
    /// points at no document the repository does not hold.
    #[test]
    fn every_command_help_ends_with_an_example_and_exit_codes() {
        fn walk(cmd: &mut clap::Command, path: &str, bad: &mut Vec<String>) {
            for help in [cmd.render_help().to_string(), cmd.render_long_help().to_string()] {
                let (example, exit) = (help.find("\nExample"), help.rfind("\nExit codes:"));
                match (example, exit) {
                    (Some(e), Some(x)) if e < x && help.find("\nOptions:").is_none_or(|o| o < e) => {}
                    _ => bad.push(format!("{path}: no Example then Exit codes at the end of its help")),
                }
                if help.contains("SPEC") {
                    bad.push(format!("{path}: cites SPEC (point at a docs/ file instead)"));
                }
                let codes = &help[exit.unwrap_or(0)..];
                if exit.is_some() && !codes.lines().skip(1).any(|l| l.trim_start().starts_with("0  ")) {
                    bad.push(format!("{path}: its exit codes do not say what 0 means"));
                }
            }
            let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
            for name in names.into_iter().filter(|n| n != "help") {
                let sub = cmd.find_subcommand_mut(&name).expect("listed above");
                walk(sub, &format!("{path} {name}"), bad);
            }
        }
        let mut bad = Vec::new();
        let mut cli = Cli::command();
        cli.build();
        walk(&mut cli, "drctl", &mut bad);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
